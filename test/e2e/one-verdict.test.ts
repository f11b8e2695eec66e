/**
 * Issue 26 in Chromium against the sandbox broker: one verdict word per RPC in Compose, History, the Trace list and the
 * Trace header (replied, error reply, request dropped), the embedded server's log in the Server panel, and screenshots of
 * the panels this changed, light and dark, at 1400x900 and 1024x700.
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { atIssueSizesAndSchemes, firehoseOnInUi, openInspectorForTest, startServerInUi, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'one-verdict');
const queue = uniqueName('rpc_queue');
let inspector: OpenInspector | undefined;
let page: Page;

beforeAll(async () => {
  inspector = await openInspectorForTest(broker.urls, shots);
  page = inspector.page;
}, 60_000);

afterAll(async () => {
  await inspector?.close();
});

/** Sends from Compose and returns the RPC id once the Reply panel shows its verdict. */
async function send(topic: string, timeoutMs = 3000): Promise<string> {
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', topic);
  await page.fill('[data-testid=compose-timeout]', String(timeoutMs));
  await page.click('[data-testid=compose-send]');
  await page.waitForSelector('[data-testid=compose-verdict] [data-testid=verdict-badge]');
  await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached' });
  return (await page.textContent('[data-testid=compose-rpc-id]')) ?? '';
}

/** The verdict word of `rpcId` in the four places, once the trace has its verdict. */
async function wordsOf(rpcId: string): Promise<Record<'compose' | 'history' | 'list' | 'header', string>> {
  await page.click('[data-testid=tab-compose]');
  const compose = (await page.textContent('[data-testid=compose-verdict] [data-testid=verdict-badge]'))?.trim() ?? '';
  const history = (await page.textContent(`[data-testid=history-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`))?.trim() ?? '';
  await page.click(`[data-testid=history-row][data-rpc-id="${rpcId}"] [data-testid=history-open]`);
  await page.waitForSelector('[data-testid=panel-trace]', { state: 'visible' });
  await page.waitForSelector(`[data-testid=trace-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`);
  const list = (await page.textContent(`[data-testid=trace-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`))?.trim() ?? '';
  const header = (await page.textContent('[data-testid=trace-selected-verdict]'))?.trim() ?? '';
  return { compose, history, list, header };
}

describe('one verdict per RPC, in Chromium', () => {
  it('says the same word in Compose, History, the Trace list and the Trace header for a reply, an error reply and a dropped request', async () => {
    await firehoseOnInUi(page);
    await startServerInUi(page, queue);
    const replied = await send(queue);
    expect(await wordsOf(replied)).toEqual({ compose: 'replied', history: 'replied', list: 'replied', header: 'replied' });

    await page.click('[data-testid=tab-server]');
    await page.click('[data-testid=server-toggle]');
    await page.waitForSelector('[data-testid=server-state] >> text=stopped');
    await startServerInUi(page, queue, 'fail:-32601:Method not found');
    const failed = await send(queue);
    expect(await wordsOf(failed)).toEqual({ compose: 'error reply', history: 'error reply', list: 'error reply', header: 'error reply' });

    const dropped = await send(uniqueName('nowhere'), 1000);
    expect(await wordsOf(dropped)).toEqual({ compose: 'request dropped', history: 'request dropped', list: 'request dropped', header: 'request dropped' });
    // No generic client sentence under the verdict.
    await page.click('[data-testid=tab-compose]');
    expect(await page.textContent('[data-testid=panel-compose]')).not.toContain('The client said');
  }, 60_000);

  it('shows the embedded server\'s log: the handler\'s outcome per request, newest first', async () => {
    await page.click('[data-testid=tab-server]');
    await page.waitForSelector('[data-testid=server-log-row]');
    const outcomes = await page.$$eval('[data-testid=server-log-row]', (rows) => rows.map((row) => `${row.getAttribute('data-outcome')}: ${row.textContent ?? ''}`));
    expect(outcomes[0]).toMatch(/^error: .*answered with error -32601 in (under 1|\d+) ms/);
    expect(outcomes.some((line) => /^result: .*answered in (under 1|\d+) ms/.test(line))).toBe(true);
  });

  it('asks before clearing the trace', async () => {
    await page.click('[data-testid=tab-trace]');
    await page.click('[data-testid=trace-clear]');
    expect(await page.textContent('[data-testid=trace-clear-confirm]')).toMatch(/Delete the trace of \d+ RPCs?/);
  });

  it('takes screenshots of the panels changed, light and dark, at both sizes', async () => {
    await atIssueSizesAndSchemes(page, async (suffix) => {
      for (const panel of ['compose', 'trace', 'server'] as const) {
        await page.click(`[data-testid=tab-${panel}]`);
        await page.waitForSelector(`[data-testid=panel-${panel}]`, { state: 'visible' });
        await page.screenshot({ path: join(shots, `${panel}-${suffix}.png`) });
        await page.screenshot({ path: join(shots, `${panel}-${suffix}-full.png`), fullPage: true });
      }
    });
    await page.click('[data-testid=tab-trace]');
    await page.click('[data-testid=trace-clear-keep]');
  }, 60_000);
});
