/**
 * "Why no reply?" where the user looks (issue 12): a request dropped by the exchange (a topic typo) and a slow server, each
 * with its verdict in Compose (sentence and hop path) and in History, and "Open in Trace" landing on the same RPC with
 * the same verdict. Firehose off, as a new user starts: the verdict rests on what the broker says after the timeout.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { openInspectorOn, startServerInUi, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const queue = uniqueName('rpc_why');
let page: Page;
let inspector: OpenInspector | undefined;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  inspector = await openInspectorOn(broker.urls);
  ({ page } = inspector);
  await page.click('[data-testid=tab-connections]');
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
  // A server that takes 10 s per request, on a queue of this test's own: the slow test reads its verdicts before the late
  // reply comes (which turns the verdict into late-reply); with 3 s a loaded 4.3.6 run read Trace after it had.
  await startServerInUi(page, queue, 'delay:10000');
}, 90_000);

afterAll(async () => {
  await inspector?.close();
});

const shot = (name: string): Promise<Buffer> => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

/** Sends from Compose and waits for the verdict of that send (not an earlier one). */
async function send(topic: string, timeoutMs: number): Promise<string> {
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', topic);
  await page.fill('[data-testid=compose-timeout]', String(timeoutMs));
  await page.fill('[data-testid=compose-payload]', '{"params": {"why": "no reply"}}');
  await page.click('[data-testid=compose-send]');
  await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached', timeout: timeoutMs + 15_000 });
  const verdict = await page.waitForSelector('[data-testid=compose-verdict]');
  return (await verdict.getAttribute('data-code')) ?? '';
}

async function followToTrace(code: string): Promise<void> {
  const rpcId = await page.getAttribute('[data-testid=history-row]:first-child', 'data-rpc-id');
  expect(rpcId).toBeTruthy();
  await page.click('[data-testid=compose-open-trace]');
  await page.waitForSelector('[data-testid=panel-trace]');
  expect(await page.textContent('[data-testid=trace-selected]')).toContain(rpcId);
  const traced = await page.waitForSelector('[data-testid=trace-verdict]');
  expect(await traced.getAttribute('data-code')).toBe(code);
  expect(await page.getAttribute(`[data-testid=trace-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`, 'data-code')).toBe(code);
}

describe('"why no reply?" in the inspector', () => {
  it('a topic typo: the exchange dropped it, said in Compose with the hop, in History, and in Trace', async () => {
    const typo = `${queue}x`;
    expect(await send(typo, 2000)).toBe('request-unroutable');
    const message = await page.textContent('[data-testid=compose-verdict] [data-testid=verdict-message]');
    expect(message).toContain(`Nothing is bound on amq.direct for routing key "${typo}"`);
    // the closest bound key is the real queue
    expect(message).toContain(`"${queue}"`);
    expect(await page.getAttribute('[data-testid=compose-verdict] [data-testid=verdict-hop][data-hop=exchange]', 'data-mark')).toBe('stopped');
    expect(await page.getAttribute('[data-testid=compose-verdict] [data-testid=verdict-hop][data-hop=mqtt-publish]', 'data-mark')).toBe('passed');
    const row = page.locator('[data-testid=history-row]').first();
    expect(await row.getAttribute('data-code')).toBe('request-unroutable');
    expect(await row.textContent()).toContain(typo);
    await shot('why-unroutable-compose');
    await followToTrace('request-unroutable');
    await shot('why-unroutable-trace');
  }, 40_000);

  it('a slow server: a consumer took it, no reply in time, said in Compose, in History, and in Trace', async () => {
    expect(await send(queue, 1000)).toBe('server-slow');
    const message = await page.textContent('[data-testid=compose-verdict] [data-testid=verdict-message]');
    expect(message).toContain(`queue "${queue}"`);
    expect(message).toContain('no reply came within 1000 ms');
    expect(await page.getAttribute('[data-testid=compose-verdict] [data-testid=verdict-hop][data-hop=server]', 'data-mark')).toBe('stopped');
    expect(await page.locator('[data-testid=history-row]').first().getAttribute('data-code')).toBe('server-slow');
    // both failed sends are listed, newest first, each with its own verdict
    expect(await page.locator('[data-testid=history-row]').nth(1).getAttribute('data-code')).toBe('request-unroutable');
    await shot('why-slow-compose');
    await followToTrace('server-slow');
    await shot('why-slow-trace');
  }, 40_000);

  it('the slow server answers after all: the verdict turns late reply, and its path follows the reply past the server', async () => {
    // Still on the slow RPC's Trace: its reply comes about 10 s after the request, and is decided again at the server's
    // confirm (the broker's answer to that reply: returned, the per-request reply topic gone with the call, or routed).
    await page.waitForSelector('[data-testid=trace-verdict][data-code=late-reply]', { timeout: 30_000 });
    await page
      .locator('[data-testid=trace-verdict] [data-testid=verdict-evidence] li', { hasText: /^server: the broker (returned|routed)/ })
      .first()
      .waitFor({ state: 'attached', timeout: 15_000 });
    const evidence = await page.$$eval('[data-testid=trace-verdict] [data-testid=verdict-evidence] li', (lines) => lines.map((line) => line.textContent ?? ''));
    const returned = evidence.some((line) => line.startsWith('server: the broker returned the reply'));
    const marks = await page.$$eval('[data-testid=trace-verdict] [data-testid=verdict-hop]', (hops) => hops.map((hop) => [hop.getAttribute('data-hop'), hop.getAttribute('data-mark')]));
    // The server answered (too late): passed, and where the time went; the reply went on as far as the broker said.
    expect(Object.fromEntries(marks)).toEqual({
      'mqtt-publish': 'passed',
      exchange: 'passed',
      queue: 'passed',
      server: 'passed',
      'reply-exchange': returned ? 'stopped' : 'passed',
      'reply-queue': returned ? 'not-reached' : 'passed',
      'mqtt-deliver': 'not-reached',
    });
    expect(await page.getAttribute('[data-testid=trace-verdict] [data-testid=verdict-hop][data-hop=server]', 'aria-current')).toBe('step');
    await shot('why-late-trace');
  }, 60_000);

  it('a good request to the same server: replied, green, every hop passed', async () => {
    expect(await send(queue, 25_000)).toBe('replied');
    const marks = await page.$$eval('[data-testid=compose-verdict] [data-testid=verdict-hop]', (hops) => hops.map((hop) => hop.getAttribute('data-mark')));
    expect(marks.length).toBeGreaterThan(0);
    expect(new Set(marks)).toEqual(new Set(['passed']));
    await shot('why-replied-compose');
  }, 60_000);
});
