/**
 * Issue 23's Watch panel in Chromium: outside clients (mosquitto_pub and mosquitto_sub as devices, an amqplib worker that
 * answers most requests, some late and some never) make a live stream while the panel watches in tap mode; the table,
 * the workers, the verdicts, Open in Trace and Stop are checked, and screenshots are taken light and dark at both sizes.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { uniqueName } from '../support/names';
import { startThirdPartyWorker } from '../support/third-party-worker';
import { startProcess, type Running } from '../support/processes';
import { atIssueSizesAndSchemes, openInspectorOn, type OpenInspector } from '../support/inspector';
import { brokerRules } from '../../src/shared/broker-versions';

const broker = inject('broker');
/** RabbitMQ 3.13+ delivers the worker's non-persistent replies to devices at QoS 0 (docs/BROKER-VERSIONS.md). */
const transientAtQos0 = brokerRules(broker.version).transientAtQos0;
const mqttPort = String(broker.ports.mqtt);
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'watch');
const queue = uniqueName('watch_e2e');
const nobodyKey = uniqueName('watch_e2e_nobody');
const device = uniqueName('dev');
const replyTopic = `reply/${device}`;
let inspector: OpenInspector | undefined;
let page: Page;
let worker: ChannelModel | undefined;
const running: Running[] = [];
const timers: Array<ReturnType<typeof setTimeout>> = [];
let stream: ReturnType<typeof setInterval> | undefined;

function start(command: string, args: string[]): Running {
  const process = startProcess(command, args);
  running.push(process);
  return process;
}

/** Waits until the number `selector` shows reaches `least` (a function, as the page's CSP allows no eval; typed here, as the Node type check knows no DOM). */
function numberAtLeast(selector: string, least: number): Promise<unknown> {
  return page.waitForFunction(
    ([shown, atLeast]) => {
      const dom = (globalThis as unknown as { document: { querySelector(what: string): { textContent: string | null } | null } }).document;
      return Number(dom.querySelector(shown)?.textContent ?? 0) >= atLeast;
    },
    [selector, least] as const,
  );
}

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  // The third-party worker: "ok-" at once, "twice-" at once and again, "late-" after 1.5 s (the watch's timeout is 1 s), "none-" never.
  worker = await startThirdPartyWorker(broker.urls.amqp, queue, (request, channel) => {
    const reply = (): boolean => channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, result: 'ok', worker: request.id.endsWith('7') ? 'node-w2' : 'node-w1' })));
    if (request.id.startsWith('ok-')) reply();
    // A request two servers took: the device gets two replies.
    else if (request.id.startsWith('twice-')) {
      reply();
      reply();
    }
    else if (request.id.startsWith('late-')) timers.push(setTimeout(reply, 1500));
  });
  inspector = await openInspectorOn(broker.urls);
  page = inspector.page;
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
}, 60_000);

afterAll(async () => {
  clearInterval(stream);
  timers.forEach(clearTimeout);
  await inspector?.close();
  for (const process of running.splice(0)) await process.stop();
  await worker?.close().catch(() => undefined);
});

describe('the Watch panel, in Chromium', () => {
  let tapQueue = '';

  it('watches a live stream from outside clients: the table, the workers and the verdicts', async () => {
    await page.click('[data-testid=tab-watch]');
    await page.waitForSelector('[data-testid=watch-empty]');
    await page.selectOption('[data-testid=watch-mode]', 'tap');
    await page.fill('[data-testid=watch-timeout]', '1000');
    await page.fill('[data-testid=watch-keys]', `${queue}, ${nobodyKey}`);
    await page.click('[data-testid=watch-toggle]');
    await page.waitForSelector('[data-testid=panel-watch][data-state=running]');
    tapQueue = /tap queue (\S+)/.exec((await page.textContent('[data-testid=watch-status]')) ?? '')?.[1] ?? '';
    expect(tapQueue).toMatch(/^bridgescope\.watch-tap\./);
    // Whichever tab is open, the header says a Watch runs, and how.
    expect((await page.textContent('[data-testid=status-watch-tap]'))?.trim()).toBe('Watch: tap');

    // The device stays subscribed to its reply topic; its requests come from mosquitto_pub, one line one message.
    const subscriber = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', replyTopic, '-q', '1', '-d', '-i', uniqueName('sub')]);
    await subscriber.waitForLine(/received SUBACK/);
    const publisher = start('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', queue, '-i', uniqueName('pub'), '-l']);
    let n = 0;
    // About 100 requests a second, as long as the test runs (the screenshots are of a live stream).
    stream = setInterval(() => {
      for (let burst = 0; burst < 2; burst += 1) {
        n += 1;
        const id = n % 25 === 0 ? `none-${n}` : n % 40 === 0 ? `late-${n}` : n % 33 === 0 ? `twice-${n}` : `ok-${n}`;
        publisher.child.stdin.write(`${JSON.stringify({ id, reply_to: replyTopic, params: { n } })}\n`);
      }
    }, 20);
    expect(await start('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', nobodyKey, '-i', uniqueName('pub'), '-m', JSON.stringify({ id: 'nobody-1', reply_to: replyTopic })]).exited).toBe(0);
    // A device that sends one id again before any reply (a retry): the first is counted retried, so the figures add up.
    for (let again = 0; again < 2; again += 1) publisher.child.stdin.write(`${JSON.stringify({ id: 'again-1', reply_to: replyTopic })}\n`);
    // A malformed one (not JSON): said and counted beside the requests, not skipped.
    publisher.child.stdin.write('not json\n');

    const row = `[data-testid=watch-row][data-topic="${queue}"]`;
    await numberAtLeast(`${row} [data-testid=watch-replies]`, 200);
    // Their worker publishes its replies non-persistent: from 3.13 the devices get them at QoS 0, counted under Replied.
    if (transientAtQos0) expect((await page.textContent(`${row} [data-testid=watch-qos0-replies]`))?.trim()).toMatch(/^\d+ at QoS 0$/);
    else expect(await page.locator(`${row} [data-testid=watch-qos0-replies]`).count()).toBe(0);
    await page.waitForSelector('[data-testid=watch-verdict][data-code=server-slow]');
    await page.waitForSelector('[data-testid=watch-verdict][data-code=late-reply]');
    await page.waitForSelector('[data-testid=watch-verdict][data-code=request-unroutable]');
    const workers = (await page.textContent(`${row} [data-testid=watch-workers]`)) ?? '';
    expect(workers).toMatch(/node-w1 \d+/);
    expect(workers).toMatch(/node-w2 \d+/);
    expect(Number(await page.textContent(`${row} [data-testid=watch-unanswered]`))).toBeGreaterThan(0);
    // The second replies are counted as extra, and marked, not as pairs.
    await numberAtLeast(`${row} [data-testid=watch-duplicates]`, 2);
    expect(await page.getAttribute(`${row} [data-testid=watch-duplicates]`, 'class')).toContain('warn');
    // The request routed nowhere could have no reply: unanswered, never "not seen", though its reply key was new to the tap.
    const nobodyRow = `[data-testid=watch-row][data-topic="${nobodyKey}"]`;
    await page.waitForFunction((selector) => {
      const dom = (globalThis as unknown as { document: { querySelector(what: string): { textContent: string | null } | null } }).document;
      return dom.querySelector(selector)?.textContent?.trim() === '1';
    }, `${nobodyRow} [data-testid=watch-unanswered]`);
    expect(await page.textContent(`${nobodyRow} [data-testid=watch-unseen]`)).toBe('0');
    const late = page.locator('[data-testid=watch-verdict][data-code=late-reply]').first();
    expect((await late.locator('[data-testid=verdict-badge]').textContent())?.trim()).toBe('late reply');
    expect(await late.locator('[data-testid=watch-verdict-sentence]').textContent()).toMatch(/\w.{20,}/);
    expect(await page.textContent('[data-testid=watch-dropped]')).toBe('0');
    await page.waitForSelector(`${row} [data-testid=watch-retried]`);
    expect((await page.textContent(`${row} [data-testid=watch-retried]`))?.trim()).toBe('1 retried');
    await page.waitForSelector(`${row} [data-testid=watch-not-requests]`);
    expect((await page.textContent(`${row} [data-testid=watch-not-requests]`))?.trim()).toBe('1 not a request');
  }, 60_000);

  it('takes screenshots of the panel under the live stream, light and dark, at 1400x900 and 1024x700', async () => {
    await atIssueSizesAndSchemes(page, async (suffix) => {
      // A batch drawn in this scheme and size first (the chart redraws at most twice a second).
      const pairs = Number(await page.textContent('[data-testid=watch-pairs]'));
      await numberAtLeast('[data-testid=watch-pairs]', pairs + 50);
      await page.screenshot({ path: join(shots, `watch-${suffix}.png`) });
      await page.screenshot({ path: join(shots, `watch-${suffix}-full.png`), fullPage: true });
    });
  }, 60_000);

  it('opens an unanswered request in Trace with what the watch saw and the same verdict word', async () => {
    const unanswered = page.locator('[data-testid=watch-verdict][data-code=server-slow]').first();
    const word = (await unanswered.locator('[data-testid=verdict-badge]').textContent())?.trim();
    await unanswered.locator('[data-testid=watch-open]').click();
    await page.waitForSelector('[data-testid=panel-trace]', { state: 'visible' });
    await page.waitForSelector('[data-testid=trace-selected-verdict]');
    expect((await page.textContent('[data-testid=trace-selected-verdict]'))?.trim()).toContain(word);
    // What the watch knew is shown, not a "?": the reply topic the device asked for, the key the broker saw, the request's id.
    const selected = page.locator('[data-testid=trace-row].selected');
    expect((await page.textContent('[data-testid=mapping-reply-topic]'))?.trim()).toBe(replyTopic);
    expect((await page.textContent('[data-testid=mapping-request-topic]'))?.trim()).toBe('not sent here');
    expect((await page.textContent('[data-testid=mapping-reply-key]'))?.trim()).toBe(`${replyTopic.replaceAll('/', '.')} (expected)`);
    expect((await page.textContent('[data-testid=mapping-reply-routed]'))?.trim()).toBe('no reply seen');
    expect((await selected.locator('[data-testid=trace-row-rtt]').textContent())?.trim()).toBe('—');
    expect((await selected.locator('[data-testid=trace-row-topic]').textContent())?.trim()).toBe(`key ${queue} → ${replyTopic}`);
    expect((await selected.locator('[data-testid=trace-row-id]').textContent())?.trim()).toMatch(/^(none|late)-\d+$/); // a late reply's request reads server-slow until its reply comes
    // The tap saw the request reach only its own queue: the path says the queue hop was not seen, not "passed".
    expect(await page.getAttribute('[data-testid=trace-verdict] [data-testid=verdict-hop][data-hop=queue]', 'data-mark')).toBe('unseen');
    expect(await page.getAttribute('[data-testid=trace-verdict] [data-testid=verdict-hop][data-hop=server]', 'data-mark')).toBe('stopped');
    await page.screenshot({ path: join(shots, 'watch-open-in-trace-light-1400x900.png') });
  });

  it('Stop deletes the tap queue and its bindings while the stream goes on', async () => {
    await page.click('[data-testid=tab-watch]');
    await page.click('[data-testid=watch-toggle]');
    await page.waitForSelector('[data-testid=panel-watch][data-state=stopped]');
    const api = new ManagementApi(broker.urls.management);
    expect((await api.queues()).some((item) => item.name === tapQueue)).toBe(false);
    expect((await api.bindings('amq.direct')).filter((binding) => binding.destination === tapQueue)).toEqual([]);
    // The figures of the run stay on the panel after Stop.
    expect(await page.locator('[data-testid=watch-row]').count()).toBeGreaterThan(0);
  });

  it('shows the OpenTelemetry setting off by default in Connections, with one sentence for a URL that is not http(s)', async () => {
    await page.click('[data-testid=tab-connections]');
    await page.waitForSelector('[data-testid=otel-setting][data-state=off]');
    await page.fill('[data-testid=otel-url]', 'localhost:4318');
    await page.click('[data-testid=otel-apply]');
    expect(await page.textContent('[data-testid=otel-url-error]')).toMatch(/must be an http:\/\/ or https:\/\/ URL/);
    await page.locator('[data-testid=otel-setting]').screenshot({ path: join(shots, 'otel-setting-light-1400x900.png') });
  });
});
