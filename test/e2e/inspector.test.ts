import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { openInspectorOn, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const queue = uniqueName('rpc_queue');
let browser: Browser;
let page: Page;
let url: string;

let inspector: OpenInspector | undefined;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  // What `npm run web` runs after building, pointed at the test's own broker.
  inspector = await openInspectorOn(broker.urls);
  ({ browser, page, url } = inspector);
}, 60_000);

afterAll(async () => {
  await inspector?.close();
});

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

describe('the inspector in Chromium (browser mode)', () => {
  it('shows both links connected to the configured broker', async () => {
    await page.click('[data-testid=tab-connections]');
    await page.waitForSelector('[data-testid=status-amqp][data-state=connected]');
    await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
    expect(await page.textContent('[data-testid=broker-overview]')).toMatch(/RabbitMQ \d+\.\d+/);
    await shot('connections');
  });

  it('starts the embedded server with two workers', async () => {
    await page.click('[data-testid=tab-server]');
    await page.fill('[data-testid=server-queue]', queue);
    await page.click('[data-testid=server-toggle]');
    await page.waitForSelector('[data-testid=server-state] >> text=running');
    await shot('server');
  });

  it('composes and sends a request, and shows the reply with the worker and the QoS granted', async () => {
    await page.click('[data-testid=tab-trace]');
    await page.check('[data-testid=trace-firehose]');
    await page.waitForSelector('[data-testid=status-tracer][data-state=on]');
    await page.click('[data-testid=tab-compose]');
    await page.fill('[data-testid=compose-topic]', queue);
    await page.selectOption('[data-testid=compose-qos]', '2');
    await page.fill('[data-testid=compose-payload]', '{"params": {"temperature": 21.5}}');
    await page.click('[data-testid=compose-send]');
    const reply = await page.waitForSelector('[data-testid=compose-reply]');
    expect(JSON.parse((await reply.textContent()) ?? '{}')).toMatchObject({ result: { temperature: 21.5 } });
    expect(await page.textContent('[data-testid=compose-worker]')).toMatch(/worker-[12]/);
    expect(await page.textContent('[data-testid=compose-granted-qos]')).toContain('asked 2, broker acknowledged as 1');
    await shot('compose');
  });

  it('validates the payload as you type and refuses to send broken JSON', async () => {
    await page.fill('[data-testid=compose-payload]', '{"broken": ');
    await page.waitForSelector('[data-testid=compose-payload-error]');
    expect(await page.isDisabled('[data-testid=compose-send]')).toBe(true);
    await page.fill('[data-testid=compose-payload]', '{"params": 1}');
  });

  it('lists rpc_queue and the MQTT reply subscription in Bindings', async () => {
    await page.click('[data-testid=tab-bindings]');
    await page.waitForSelector(`[data-testid=binding-row] >> text=${queue}`);
    await page.waitForSelector('[data-testid=binding-row] >> text=MQTT client');
    await page.click('[data-testid=probe-run]');
    expect(await (await page.waitForSelector('[data-testid=probe-verdict]')).textContent()).toContain('publishes to amq.direct');
    await shot('bindings');
  });

  it('shows the full trace of the request with the topic -> routing key -> topic mapping', async () => {
    await page.click('[data-testid=tab-trace]');
    await page.click('[data-testid=trace-row]');
    await page.waitForSelector('[data-testid=trace-step][data-kind="broker.delivered"] >> text=mqtt-subscription');
    const kinds = await page.$$eval('[data-testid=trace-step]', (rows) => rows.map((row) => row.getAttribute('data-kind')));
    expect(kinds).toEqual(expect.arrayContaining(['composed', 'mqtt.published', 'broker.published', 'broker.delivered', 'worker.received', 'handler.finished', 'reply.published', 'mqtt.reply.received']));
    expect(await page.textContent('[data-testid=trace-mapping]')).toContain(queue);
    await shot('trace');
  });

  it('flags a reply topic with a "." as the dot pitfall, in Compose and in the trace', async () => {
    await page.click('[data-testid=tab-compose]');
    const replyTopic = `reply/v1.2/${uniqueName('e2e')}`;
    await page.fill('[data-testid=compose-reply-topic]', replyTopic);
    await page.waitForSelector('[data-testid=compose-reply-mapping] >> text=level separator');
    await page.click('[data-testid=compose-send]');
    await page.waitForSelector(`[data-testid=compose-arrived-on] >> text=${replyTopic.replace('v1.2', 'v1/2')}`);
    await page.click('[data-testid=tab-trace]');
    await page.fill('[data-testid=trace-search]', replyTopic);
    await page.click('[data-testid=trace-row]');
    const warnings = await (await page.waitForSelector('[data-testid=trace-warnings]')).textContent();
    expect(warnings).toContain(`asked ${replyTopic}, arrived on ${replyTopic.replace('v1.2', 'v1/2')}`);
    expect(await page.textContent('[data-testid=mapping-arrived-on]')).toBe(replyTopic.replace('v1.2', 'v1/2'));
    await shot('trace-dot-pitfall');
    await page.fill('[data-testid=trace-search]', '');
  });

  it('fires a load of 300 requests at concurrency 20 and shows the histogram and the summary', async () => {
    await page.click('[data-testid=tab-compose]');
    await page.fill('[data-testid=compose-reply-topic]', '');
    await page.selectOption('[data-testid=compose-qos]', '1');
    await page.click('[data-testid=tab-load]');
    await page.fill('[data-testid=load-count]', '300');
    await page.fill('[data-testid=load-concurrency]', '20');
    await page.click('[data-testid=load-run]');
    const summary = await (await page.waitForSelector('[data-testid=load-summary]')).textContent();
    expect(summary).toContain('300 of 300');
    expect(summary).toMatch(/Errors\s*none/);
    await shot('load');
  });

  it('turns the firehose off again, restoring the vhost', async () => {
    await page.click('[data-testid=tab-trace]');
    await page.uncheck('[data-testid=trace-firehose]');
    await page.waitForSelector('[data-testid=status-tracer][data-state=off]');
  });

  it('works when opened at http://localhost:PORT as well', async () => {
    const localPage = await browser.newPage();
    await localPage.goto(url.replace('127.0.0.1', 'localhost'));
    await localPage.waitForSelector('[data-app-state="ready"]');
    await localPage.waitForSelector('[data-testid=status-amqp][data-state=connected]');
    await localPage.close();
  });
});
