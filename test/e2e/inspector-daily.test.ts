/** Issue 13 in Chromium: the inspector as a daily driver (copy, trace detail, load, bindings, keyboard, the host going away), with screenshots of every panel. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { atIssueSizesAndSchemes, firehoseOnInUi, openInspectorOn, startServerInUi, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'daily');
const queue = uniqueName('rpc_queue');
const panels = ['connections', 'server', 'compose', 'bindings', 'trace', 'load'] as const;
let inspector: OpenInspector | undefined;
let page: Page;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  inspector = await openInspectorOn(broker.urls);
  page = inspector.page;
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(inspector.url).origin });
}, 60_000);

afterAll(async () => {
  await page?.emulateMedia({ colorScheme: 'light' });
  await inspector?.close();
});

/** Every panel, light and dark, at the two window sizes the issue names. */
async function shootEveryPanel(label: string): Promise<void> {
  await atIssueSizesAndSchemes(page, async (suffix) => {
    for (const panel of panels) {
      await page.click(`[data-testid=tab-${panel}]`);
      await page.waitForSelector(`[data-testid=panel-${panel}]`, { state: 'visible' });
      await page.screenshot({ path: join(shots, `${label}-${panel}-${suffix}.png`), fullPage: true });
    }
  });
}

// Expressions as text: this file is type-checked without the DOM's types, the page runs them.
const clipboard = (): Promise<string> => page.evaluate<string>('navigator.clipboard.readText()');

describe('the inspector as a daily driver, in Chromium', () => {
  it('shows an empty Load panel as an empty state, not blank charts', async () => {
    await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
    await page.click('[data-testid=tab-load]');
    expect(await page.textContent('[data-testid=load-empty]')).toContain('No load run yet.');
    expect(await page.$('[data-testid=load-throughput]')).toBeNull();
    await shootEveryPanel('empty');
  });

  it('sends from Compose by keyboard alone and opens the RPC in Trace by keys', async () => {
    await startServerInUi(page, queue);
    await firehoseOnInUi(page);
    await page.click('[data-testid=tab-compose]');
    await page.fill('[data-testid=compose-topic]', queue);
    await page.focus('[data-testid=compose-topic]');
    await page.keyboard.press('Control+Enter');
    await page.waitForSelector('[data-testid=compose-reply]');
    // From the reply area, Tab reaches "Open in Trace" and Enter opens it.
    await page.focus('[data-testid=compose-preflight]');
    let focused = '';
    for (let presses = 0; presses < 12 && focused !== 'compose-open-trace'; presses += 1) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate<string>("document.activeElement?.getAttribute('data-testid') ?? ''");
    }
    expect(focused).toBe('compose-open-trace');
    const focusRing = await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
    expect(focusRing).not.toBe('none');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid=panel-trace]', { state: 'visible' });
    expect(await page.getAttribute('[data-testid=tab-trace]', 'aria-selected')).toBe('true');
    expect(await page.textContent('[data-testid=trace-selected]')).toContain(await page.textContent('[data-testid=compose-rpc-id]'));
  });

  it('shows the trace detail with deltas, the total, both bodies, and the row with time, round trip and origin', async () => {
    await page.waitForSelector('[data-testid=trace-step][data-kind="mqtt.reply.received"]');
    const deltas = await page.$$eval('[data-testid=trace-step-delta]', (cells) => cells.map((cell) => cell.textContent ?? ''));
    expect(deltas[0]).toBe('0 ms');
    expect(deltas.every((delta) => /^[+−]?\d+ ms/.test(delta))).toBe(true);
    expect(await page.textContent('[data-testid=trace-total]')).toMatch(/^Total: \d+ ms from the first step to the last\.$/);
    // Every step stamped earlier than the one above carries its explanation.
    const backwards = await page.$$eval('[data-testid=trace-step].backwards', (rows) => rows.map((row) => row.querySelector('[data-testid=trace-step-clock-note]')?.textContent ?? ''));
    for (const note of backwards) expect(note).toMatch(/^Stamped \d+ ms before the step above/);
    expect(JSON.parse((await page.textContent('[data-testid=trace-request-body]')) ?? '')).toMatchObject({ params: { hello: 'device' }, reply_to: expect.stringMatching(/^reply\//) });
    expect(JSON.parse((await page.textContent('[data-testid=trace-reply-body]')) ?? '')).toMatchObject({ result: { hello: 'device' } });
    const row = page.locator('[data-testid=trace-row].selected');
    expect(await row.locator('[data-testid=trace-row-time]').textContent()).toMatch(/^\d\d:\d\d:\d\d$/);
    expect(await row.locator('[data-testid=trace-row-rtt]').textContent()).toMatch(/^\d+ ms$/);
    expect(await row.locator('[data-testid=trace-row-origin]').textContent()).toBe('compose');
    expect(await row.locator('[data-testid=trace-row-topic]').getAttribute('title')).toContain(`${queue} → reply/`);
  });

  it('copies the request as a bridgescope call and a mosquitto_pub command', async () => {
    await page.click('[data-testid=tab-compose]');
    await page.click('[data-testid=copy-as-call]');
    expect(await clipboard()).toBe(`bridgescope call --mqtt ${broker.urls.mqtt} --topic ${queue} --timeout 5000 '{"params":{"hello":"device"}}'`);
    await page.click('[data-testid=copy-as-mosquitto]');
    const port = new URL(broker.urls.mqtt).port;
    expect(await clipboard()).toMatch(new RegExp(`^mosquitto_pub -h 127\\.0\\.0\\.1 -p ${port} -t ${queue} -q 1 -m '\\{"params":\\{"hello":"device"\\},"id":"[0-9a-f-]{36}","reply_to":"reply/[0-9a-f-]{36}"\\}'$`));
    await page.click('[data-testid=copy-reply]');
    expect(JSON.parse(await clipboard())).toMatchObject({ result: { hello: 'device' } });
  });

  it("labels BridgeScope's own reply binding, and says when a per-request one was there", async () => {
    await page.selectOption('[data-testid=compose-strategy]', 'shared');
    await page.click('[data-testid=compose-send]');
    await page.waitForSelector('[data-testid=compose-reply]');
    await page.click('[data-testid=tab-bindings]');
    await page.waitForSelector('[data-testid=binding-row][data-needed=reply] >> [data-testid=binding-own] >> text=this app');
    await page.click('[data-testid=tab-compose]');
    await page.selectOption('[data-testid=compose-strategy]', 'per-request');
    await page.click('[data-testid=compose-send]');
    await page.waitForSelector('[data-testid=compose-reply]');
    await page.click('[data-testid=tab-bindings]');
    expect(await (await page.waitForSelector('[data-testid=bindings-need-gone]')).textContent()).toMatch(/^gone: was there from \d\d:\d\d:\d\d to \d\d:\d\d:\d\d$/);
  });

  it('says "cancelled", not "failed", for a cancelled load run, and its errors in sentences', async () => {
    await page.click('[data-testid=tab-load]');
    await page.fill('[data-testid=load-count]', '200000');
    await page.fill('[data-testid=load-concurrency]', '4');
    await page.click('[data-testid=load-run]');
    await page.waitForSelector('[data-testid=load-throughput]');
    await page.click('[data-testid=load-run]');
    const cancelled = await (await page.waitForSelector('[data-testid=load-summary-cancelled]')).textContent();
    expect(cancelled).toMatch(/^Cancelled: \d+ requests? in flight (was|were) cut off, [\d,]+ requests never sent\.$/);
    expect(await page.textContent('[data-testid=load-summary-errors]')).not.toMatch(/[{}"]/);
    expect(await page.textContent('[data-testid=load-failed]')).toBe('0');
    // The firehose is on (since the Trace panel's test above): every request was traced in full, as the form said.
    expect(await page.textContent('[data-testid=load-trace-every-firehose]')).toBe('The firehose is on: every request of the run will be traced in full.');
    expect(await page.textContent('[data-testid=load-summary-trace]')).toMatch(/^The trace kept all [\d,]+ requests in full\.$/);
  });

  it('keeps the trace of load runs apart from Compose with the origin filter', async () => {
    await page.click('[data-testid=tab-trace]');
    // The virtual list redraws its rows a frame after the filter changes (and the load run's last steps may still come):
    // wait until a row of that origin is shown and no row of another (selectors, not script: the page's CSP forbids eval).
    const rowsOnlyFrom = async (origin: string): Promise<void> => {
      await page.waitForSelector(`[data-testid=trace-row-origin]:text-is("${origin}")`);
      await page.waitForSelector(`[data-testid=trace-row-origin]:not(:text-is("${origin}"))`, { state: 'detached' });
    };
    await page.selectOption('[data-testid=trace-origin]', 'compose');
    await rowsOnlyFrom('compose');
    // Filtered, the counts say how many of all (RPCs and their steps) the list shows.
    expect(await page.textContent('[data-testid=trace-counts]')).toMatch(/^\s*3 of [\d,]+ RPCs, \d+ of [\d,]+ steps\s*$/);
    await page.selectOption('[data-testid=trace-origin]', 'load');
    await rowsOnlyFrom('load');
    // A Compose RPC stays selected when the filter goes back to all: the screenshots show its bodies.
    await page.selectOption('[data-testid=trace-origin]', 'compose');
    await page.click('[data-testid=trace-row]');
    await page.selectOption('[data-testid=trace-origin]', 'all');
    await page.waitForSelector('[data-testid=trace-request-body]');
    await page.click('[data-testid=tab-connections]');
    await page.click('[data-testid=profile-save]');
    await page.waitForSelector('[data-testid=saved-profile]');
    await shootEveryPanel('used');
  });

  it('gives every control of every panel a name a screen reader can say', async () => {
    const unnamed: string[] = [];
    for (const panel of panels) {
      await page.click(`[data-testid=tab-${panel}]`);
      await page.waitForSelector(`[data-testid=panel-${panel}]`, { state: 'visible' });
      unnamed.push(
        ...(await page.$$eval('button, input:not([type=hidden]), select, textarea', (controls) =>
          controls
            // Shown ones only (the file input is hidden and driven by its Import button); the DOM's types are not loaded here.
            .filter((control) => (control as unknown as { offsetParent: unknown }).offsetParent !== null)
            .filter((control) => {
              const labels = (control as unknown as { labels?: { length: number } | null }).labels;
              const named = control.getAttribute('aria-label') || control.getAttribute('aria-labelledby') || (labels?.length ?? 0) > 0 || (control.tagName === 'BUTTON' && control.textContent?.trim());
              return !named;
            })
            .map((control) => `${control.tagName.toLowerCase()} ${control.getAttribute('data-testid') ?? control.outerHTML.slice(0, 80)}`),
        )).map((control) => `${panel}: ${control}`),
      );
    }
    expect(unnamed).toEqual([]);
  });

  it('says "disconnected from BridgeScope" within a couple of seconds of the host stopping, and no pill says connected', async () => {
    await page.click('[data-testid=tab-compose]');
    await inspector?.ui.stop();
    await page.waitForSelector('[data-testid=status-host][data-state=down]', { timeout: 2000 });
    expect(await page.textContent('[data-testid=host-down]')).toContain('Disconnected from BridgeScope');
    expect(await page.$$eval('.pill', (pills) => pills.map((pill) => pill.getAttribute('data-state')))).toEqual(['down', 'unknown', 'unknown', 'unknown']);
    expect(await page.isDisabled('[data-testid=compose-send]')).toBe(true);
    await page.screenshot({ path: join(shots, 'host-stopped-1400x900.png'), fullPage: true });
  });
});
