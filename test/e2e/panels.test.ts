/**
 * Issue 26, the rest of the walk in Chromium against the run's broker: a non-JSON send is one RPC in the Trace (no
 * second "external" row), every button and field's accessible name holds its visible label (playwright's accessibility
 * snapshot), Send and History fit a 1024x700 window, and screenshots of every panel, light and dark, at 1400x900 and
 * 1024x700 (test-results/screenshots/panels/).
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { openInspectorForTest, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'panels');
const queue = uniqueName('rpc_queue');
const PANELS = ['connections', 'server', 'compose', 'bindings', 'trace', 'load'] as const;
let inspector: OpenInspector | undefined;
let page: Page;

beforeAll(async () => {
  inspector = await openInspectorForTest(broker.urls, shots, queue);
  page = inspector.page;
}, 60_000);

afterAll(async () => {
  await inspector?.close();
});

/** Sends the form from Compose and waits for its verdict. */
async function send(payloadFormat: string, payloadText: string, timeoutMs = 3000): Promise<string> {
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', queue);
  await page.fill('[data-testid=compose-timeout]', String(timeoutMs));
  await page.selectOption('[data-testid=compose-payload-format]', payloadFormat);
  await page.fill('[data-testid=compose-payload]', payloadText);
  await page.click('[data-testid=compose-send]');
  await page.waitForSelector('[data-testid=compose-verdict] [data-testid=verdict-badge]');
  await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached' });
  return (await page.textContent('[data-testid=compose-rpc-id]')) ?? '';
}

/** Every visible button, field and list box of the page: its visible label, and the name playwright's accessibility tree gives it. */
async function namesOnPage(): Promise<Array<{ what: string; visible: string; name: string }>> {
  const controls = await page.$$eval('button, input:not([type=hidden]):not([type=file]), select, textarea', (elements) => {
    const found: Array<{ index: number; what: string; visible: string }> = [];
    type Control = (typeof elements)[number];
    // The text a sighted user reads: the element's text nodes, apart from controls inside a label, text for screen
    // readers only and what is hidden from them; one space between nodes.
    const textOf = (element: Control | null): string => {
      if (!element) return '';
      const parts: string[] = [];
      // 4: NodeFilter.SHOW_TEXT
      const walker = element.ownerDocument.createTreeWalker(element, 4);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (parent && parent !== element && parent.closest('input, select, textarea, option, .sr-only, [aria-hidden=true]')) continue;
        if (parent && element.tagName === 'LABEL' && parent.closest('button')) continue;
        parts.push(node.textContent ?? '');
      }
      return parts.join(' ').replace(/\s+/g, ' ').trim();
    };
    elements.forEach((element, index) => {
      // Only what has a box; playwright's own visibility decides below (a closed <details> keeps boxes).
      if (element.getClientRects().length === 0) return;
      element.setAttribute('data-a11y-index', String(index));
      const label = element.closest('label') ?? (element.id ? element.ownerDocument.querySelector(`label[for="${element.id}"]`) : null);
      const visible = element.tagName === 'BUTTON' ? textOf(element) : textOf(label);
      found.push({ index, what: `${element.tagName.toLowerCase()}${element.getAttribute('data-testid') ? `[${element.getAttribute('data-testid')}]` : ''}`, visible });
    });
    return found;
  });
  const named: Array<{ what: string; visible: string; name: string }> = [];
  for (const control of controls) {
    const control$ = page.locator(`[data-a11y-index="${control.index}"]`);
    // Inside a closed <details> a control has boxes but is not shown: playwright's own visibility decides.
    if (!(await control$.isVisible())) continue;
    const snapshot = await control$.ariaSnapshot();
    // The first line is the control itself: `- button "Name"`, `- textbox "Name"`, `- combobox "Name"`; YAML quotes the
    // whole entry when the name holds ": " (`- 'button "Open in Trace: sent …"'`).
    let line = (snapshot.split('\n')[0] ?? '').replace(/^- /, '');
    if (line.startsWith("'")) line = line.slice(1, line.lastIndexOf("'")).replace(/''/g, "'");
    const name = /^\w+(?: "((?:[^"\\]|\\.)*)")?/.exec(line)?.[1] ?? '';
    named.push({ what: control.what, visible: control.visible, name: name.replace(/\\"/g, '"') });
  }
  return named;
}

/** Whether every word of the visible label is in the accessible name, in the same order (WCAG 2.5.3, label in name). */
function labelInName(visible: string, name: string): boolean {
  const said = name.toLowerCase();
  let from = 0;
  for (const word of visible.toLowerCase().split(/\s+/).filter(Boolean)) {
    const at = said.indexOf(word, from);
    if (at < 0) return false;
    from = at + word.length;
  }
  return true;
}

describe('the panels in Chromium (issue 26)', () => {
  it('a non-JSON send is one RPC in the Trace: no second "(broker only)" row without a verdict, with the firehose off', async () => {
    await send('json', '{"params": 1}');
    const rejected = await send('text', 'not json {');
    await page.waitForSelector('[data-testid=compose-verdict][data-code=request-rejected]');
    await page.click('[data-testid=tab-trace]');
    await page.waitForSelector(`[data-testid=trace-row][data-rpc-id="${rejected}"] [data-testid=verdict-badge]`);
    const rows = await page.$$eval('[data-testid=trace-row]', (found) => found.map((row) => row.textContent ?? ''));
    expect(rows).toHaveLength(2);
    expect(rows.join('\n')).not.toContain('(broker only)');
    expect(await page.textContent(`[data-testid=trace-row][data-rpc-id="${rejected}"] [data-testid=verdict-badge]`)).toContain('rejected');
  }, 60_000);

  it('Compose shows the body it sent with its id and reply_to', async () => {
    const replied = await send('json', '{"params": {"hello": "device"}}');
    await page.waitForSelector('[data-testid=compose-sent]');
    expect(await page.textContent('[data-testid=compose-sent-id]')).toBe(replied);
    expect(await page.textContent('[data-testid=compose-sent-reply-to]')).toMatch(/^reply\//);
  }, 30_000);

  it.each(PANELS)('%s: every button and field has an accessible name that holds its visible label', async (panel) => {
    await page.click(`[data-testid=tab-${panel}]`);
    await page.waitForSelector(`[data-testid=panel-${panel}]`, { state: 'visible' });
    const named = await namesOnPage();
    expect(named.length).toBeGreaterThan(0);
    const wrong = named.filter((control) => control.name === '' || !labelInName(control.visible, control.name));
    expect(wrong).toEqual([]);
  }, 30_000);

  it('at 1024x700, Send and the History list are in view on Compose without scrolling', async () => {
    await page.setViewportSize({ width: 1024, height: 700 });
    try {
      await page.click('[data-testid=tab-compose]');
      await page.evaluate('window.scrollTo(0, 0)');
      for (const testid of ['compose-send', 'compose-history']) {
        const box = await page.locator(`[data-testid=${testid}]`).boundingBox();
        expect({ testid, top: box?.y, inView: box !== null && box.y >= 0 && box.y + Math.min(box.height, 40) <= 700 }).toMatchObject({ testid, inView: true });
      }
    } finally {
      await page.setViewportSize({ width: 1400, height: 900 });
    }
  }, 30_000);

  it('shoots every panel, light and dark (the theme toggle), at 1400x900 and 1024x700', async () => {
    // A small load run, so the Load panel has its charts.
    await page.click('[data-testid=tab-load]');
    await page.fill('[data-testid=load-count]', '40');
    await page.click('[data-testid=load-run]');
    await page.waitForSelector('[data-testid=load-summary]');
    // The firehose is off: one request in ten traced in full (none failed, too few for a latency to be rare).
    expect(await page.textContent('[data-testid=load-summary-trace]')).toBe('The trace kept 4 requests in full (1 in 10); 36 other requests were let go.');
    for (const [width, height] of [
      [1400, 900],
      [1024, 700],
    ] as const) {
      await page.setViewportSize({ width, height });
      for (const theme of ['light', 'dark'] as const) {
        await page.selectOption('[data-testid=theme]', theme);
        for (const panel of PANELS) {
          await page.click(`[data-testid=tab-${panel}]`);
          await page.waitForSelector(`[data-testid=panel-${panel}]`, { state: 'visible' });
          if (panel === 'trace') await page.locator('[data-testid=trace-row]').first().click();
          await page.evaluate('window.scrollTo(0, 0)');
          await page.screenshot({ path: join(shots, `${panel}-${theme}-${width}x${height}.png`) });
        }
      }
    }
    await page.selectOption('[data-testid=theme]', 'system');
    await page.setViewportSize({ width: 1400, height: 900 });
    // After a reload the page asks the host for the last run: its summary is there again, and its requests are still the
    // run's in the Trace, saying why each was kept.
    await page.reload();
    await page.waitForSelector('[data-app-state="ready"]');
    await page.click('[data-testid=tab-load]');
    await page.waitForSelector('[data-testid=load-summary]');
    expect(await page.textContent('[data-testid=load-summary-trace]')).toBe('The trace kept 4 requests in full (1 in 10); 36 other requests were let go.');
    expect(await page.textContent('[data-testid=load-done]')).toBe('40 / 40');
    await page.screenshot({ path: join(shots, 'load-after-reload-1400x900.png') });
    await page.click('[data-testid=tab-trace]');
    await page.selectOption('[data-testid=trace-origin]', 'load');
    await page.waitForSelector('[data-testid=trace-row]');
    expect(await page.locator('[data-testid=trace-row]').count()).toBe(4);
    await page.locator('[data-testid=trace-row]').first().click();
    expect(await page.textContent('[data-testid=trace-load-run]')).toBe("This is a load run's request, traced in full (1 in 10).");
    expect(await page.locator('[data-testid=trace-no-verdict]').textContent()).toMatch(/^A load run gives no verdict to a request that was answered/);
    await page.screenshot({ path: join(shots, 'trace-after-reload-1400x900.png') });
    await page.selectOption('[data-testid=trace-origin]', 'all');
    // Import would replace that trace: it asks first, and the file picker opens from the answer.
    await page.click('[data-testid=trace-import-button]');
    expect(await page.textContent('[data-testid=trace-import-confirm]')).toMatch(/^\s*Importing a file replaces the trace of 7 RPCs in the app with the file's; Export it first to keep a copy\./);
    await page.screenshot({ path: join(shots, 'trace-import-confirm-1400x900.png') });
    await page.selectOption('[data-testid=theme]', 'dark');
    await page.screenshot({ path: join(shots, 'trace-import-confirm-dark-1400x900.png') });
    await page.selectOption('[data-testid=theme]', 'system');
    const chooser = page.waitForEvent('filechooser');
    await page.click('[data-testid=trace-import-yes]');
    expect((await chooser).isMultiple()).toBe(false);
    expect(await page.locator('[data-testid=trace-row]').count()).toBe(7);
  }, 120_000);
});
