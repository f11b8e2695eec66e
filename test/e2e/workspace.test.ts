/**
 * Issue 13's "history that lasts" in Chromium: Compose's history survives a reload and a restart of `bridgescope ui` (the
 * same URL, the open page reconnects by itself), search/delete/clear, template rename/delete, and profiles moved through
 * a file without their passwords. Screenshots of the history and templates, light and dark, at two sizes.
 */
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { cliPath } from '../support/cli';
import { startProcess, type Running } from '../support/processes';
import { atIssueSizesAndSchemes, openInspectorOn, startServerInUi, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'workspace');
const queue = uniqueName('rpc_history');
const typo = `${queue}_typo`;
let dataDir: string;
let inspector: OpenInspector | undefined;
let restarted: Running | undefined;
let page: Page;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  dataDir = await mkdtemp(join(tmpdir(), 'bridgescope-e2e-workspace-'));
  inspector = await openInspectorOn(broker.urls, ['--data-dir', dataDir]);
  ({ page } = inspector);
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
  await startServerInUi(page, queue);
}, 90_000);

afterAll(async () => {
  await page?.emulateMedia({ colorScheme: 'light' });
  await inspector?.close();
  await restarted?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

const rowCount = (): Promise<number> => page.locator('[data-testid=history-row]').count();
/** Exactly `count` rows: the last one there and none after it (Playwright's own waiting; the page's CSP forbids eval). */
async function waitForRows(count: number): Promise<void> {
  const rows = page.locator('[data-testid=history-row]');
  if (count > 0) await rows.nth(count - 1).waitFor();
  await rows.nth(count).waitFor({ state: 'detached' });
}
const topics = (): Promise<string[]> => page.locator('[data-testid=history-row] .history-topic').allTextContents();

async function send(topic: string, timeoutMs: number, payload: string): Promise<void> {
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', topic);
  await page.fill('[data-testid=compose-timeout]', String(timeoutMs));
  await page.fill('[data-testid=compose-payload]', payload);
  const before = await rowCount();
  await page.click('[data-testid=compose-send]');
  await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached', timeout: timeoutMs + 15_000 });
  await waitForRows(before + 1);
}

/** The Compose panel scrolled to the history, light and dark, at both sizes the issue names. */
async function shootHistory(label: string): Promise<void> {
  await atIssueSizesAndSchemes(page, async (suffix) => {
    await page.locator('[data-testid=compose-history]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, `${label}-${suffix}.png`) });
  });
}

describe('history, templates and profiles that last', () => {
  it('keeps the history across a page reload and a restart of `bridgescope ui`: the same URL, and the open page reconnects by itself', async () => {
    await send(queue, 10_000, '{"params": {"colour": "teal"}}');
    await send(typo, 1500, '{"params": {"colour": "amber"}}');
    await send(queue, 10_000, '{"params": {"colour": "violet"}}');
    expect(await topics()).toEqual([queue, typo, queue]);
    expect(await page.locator('[data-testid=history-row]').nth(1).getAttribute('data-code')).toBe('request-unroutable');

    await page.reload();
    await page.waitForSelector('[data-app-state="ready"]');
    await page.click('[data-testid=tab-compose]');
    await waitForRows(3);
    expect(await topics()).toEqual([queue, typo, queue]);

    // The token and port are kept in the data dir, readable by their owner only.
    expect((await stat(join(dataDir, 'ui-host.json'))).mode & 0o777).toBe(0o600);
    const url = (inspector as OpenInspector).url;
    await (inspector as OpenInspector).ui.stop();
    await page.waitForSelector('[data-testid=status-host][data-state=down]');
    restarted = startProcess('env', [
      `BRIDGESCOPE_AMQP_URL=${broker.urls.amqp}`,
      `BRIDGESCOPE_MQTT_URL=${broker.urls.mqtt}`,
      `BRIDGESCOPE_MANAGEMENT_URL=${broker.urls.management}`,
      process.execPath,
      cliPath,
      'ui',
      '--data-dir',
      dataDir,
    ]);
    const ready = await restarted.waitForLine(/BridgeScope is ready: http/);
    expect(/(http:\/\/\S+)/.exec(ready)?.[1]).toBe(url);
    // The page was never reloaded: it finds the new run on its own.
    await page.waitForSelector('[data-testid=status-host]', { state: 'detached', timeout: 20_000 });
    await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
    await waitForRows(3);
    expect(await topics()).toEqual([queue, typo, queue]);
    await shootHistory('history');
  }, 90_000);

  it('searches the history (topic, body, verdict), deletes one entry and clears all after a confirmation', async () => {
    await page.fill('[data-testid=history-search]', 'AMBER');
    await waitForRows(1);
    expect(await topics()).toEqual([typo]);
    await page.fill('[data-testid=history-search]', 'request dropped');
    await waitForRows(1);
    await page.fill('[data-testid=history-search]', 'violet');
    await waitForRows(1);
    await page.fill('[data-testid=history-search]', 'no such thing anywhere');
    await page.waitForSelector('[data-testid=history-no-match]');
    await page.fill('[data-testid=history-search]', '');
    await waitForRows(3);

    await page.locator('[data-testid=history-row]').nth(1).locator('[data-testid=history-delete]').click();
    await waitForRows(2);
    expect(await topics()).toEqual([queue, queue]);

    await page.click('[data-testid=history-clear]');
    expect(await page.textContent('[data-testid=history-clear-confirm]')).toContain('Delete all 2 entries of the history?');
    await shootHistory('history-clear-confirm');
    await page.click('[data-testid=history-clear-yes]');
    await waitForRows(0);
    // Cleared for good: a reload asks the core again.
    await page.reload();
    await page.waitForSelector('[data-app-state="ready"]');
    await page.click('[data-testid=tab-compose]');
    expect(await page.textContent('[data-testid=history-count]')).toBe('0 kept');
  }, 60_000);

  it('replays an entry whose body was too big to keep by filling the form and asking for the body, sending nothing empty', async () => {
    // No server since the restart: a short wait is enough for the entry.
    await send(queue, 1500, JSON.stringify({ params: { blob: 'b'.repeat(100 * 1024) } }));
    await page.fill('[data-testid=compose-payload]', '{"params": {}}');
    await page.fill('[data-testid=compose-topic]', typo);
    await page.locator('[data-testid=history-row]').first().locator('[data-testid=history-replay]').click();
    expect(await page.textContent('[data-testid=compose-payload-error]')).toBe('The body (100.0 KiB) was too big to keep in the history: paste it again to send.');
    expect(await page.inputValue('[data-testid=compose-topic]')).toBe(queue);
    expect(await page.inputValue('[data-testid=compose-payload]')).toBe('');
    expect(await page.isDisabled('[data-testid=compose-send]')).toBe(true);
    await atIssueSizesAndSchemes(page, async (suffix) => {
      await page.locator('[data-testid=compose-payload-error]').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(shots, `history-replay-body-not-kept-${suffix}.png`) });
    });
    // Nothing was sent: still the one entry.
    await waitForRows(1);
  }, 60_000);

  it('renames a template in an inline field and deletes another', async () => {
    await page.click('[data-testid=tab-compose]');
    await page.fill('[data-testid=compose-topic]', queue);
    for (const name of ['morning check', 'reboot all']) {
      await page.fill('[data-testid=template-name]', name);
      await page.click('[data-testid=template-save]');
      await page.waitForSelector(`[data-testid=template-row][data-name="${name}"]`);
    }
    await page.click('[data-testid=template-row][data-name="morning check"] [data-testid=template-rename]');
    await page.fill('[data-testid=template-rename-input]', 'health check');
    await page.screenshot({ path: join(shots, 'template-rename-light-1400x900.png') });
    await page.press('[data-testid=template-rename-input]', 'Enter');
    await page.waitForSelector('[data-testid=template-row][data-name="health check"]');
    await page.click('[data-testid=template-row][data-name="reboot all"] [data-testid=template-delete]');
    await page.waitForSelector('[data-testid=template-row][data-name="reboot all"]', { state: 'detached' });
    expect(await page.locator('[data-testid=template-row]').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-name')))).toEqual(['health check']);
    // The restarted `ui` is a new process: its embedded server starts again.
    await startServerInUi(page, queue);
    await send(queue, 10_000, '{"params": {"after": "clear"}}');
    expect(await page.locator('[data-testid=history-row]').first().getAttribute('data-code')).toBe('replied');
    await shootHistory('templates');
  }, 60_000);

  it('exports profiles and templates without passwords unless asked, and imports that file back, saying what it did', async () => {
    const secret = 'p4ss-w0rd-e2e';
    const file = {
      format: 'bridgescope-workspace',
      version: 1,
      profiles: [
        { name: 'e2e remote', amqpUrl: `amqp://app:${secret}@127.0.0.1:5999`, mqttUrl: `mqtt://app:${secret}@127.0.0.1:1999`, managementUrl: `http://app:${secret}@127.0.0.1:15999`, vhost: '/', exchange: 'amq.direct' },
        { name: 'broken', amqpUrl: '', mqttUrl: 'mqtt://x', managementUrl: 'http://x', vhost: '/', exchange: 'amq.direct' },
      ],
      templates: [],
    };
    await page.click('[data-testid=tab-connections]');
    await page.setInputFiles('[data-testid=profiles-import]', { name: 'with-secrets.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(file)) });
    const report = await page.waitForSelector('[data-testid=profiles-import-report]');
    expect(await report.textContent()).toContain('Added 1 profile: "e2e remote".');
    expect(await report.textContent()).toContain('Refused the profile "broken": amqpUrl: The AMQP URL cannot be empty.');
    await page.waitForSelector('[data-testid=saved-profile] >> text=e2e remote');

    const exported = async (): Promise<string> => {
      const download = page.waitForEvent('download');
      await page.click('[data-testid=profiles-export]');
      return readFile(await (await download).path(), 'utf8');
    };
    const plain = await exported();
    expect(plain).not.toContain(secret);
    const parsed = JSON.parse(plain) as { includesPasswords: boolean; profiles: Array<{ name: string; amqpUrl: string }>; templates: Array<{ name: string }> };
    expect(parsed.includesPasswords).toBe(false);
    expect(parsed.profiles.find((profile) => profile.name === 'e2e remote')?.amqpUrl).toBe('amqp://app@127.0.0.1:5999');
    expect(parsed.templates.map((template) => template.name)).toEqual(['health check']);

    await page.check('[data-testid=profiles-export-passwords]');
    expect(await page.textContent('[data-testid=profiles-export-warning]')).toContain('passwords in plain text');
    await page.screenshot({ path: join(shots, 'profiles-transfer-light-1400x900.png'), fullPage: true });
    expect(await exported()).toContain(secret);
    await page.uncheck('[data-testid=profiles-export-passwords]');

    // Back in from the file without secrets: the profile is replaced by name, the template too.
    await page.setInputFiles('[data-testid=profiles-import]', { name: 'plain.json', mimeType: 'application/json', buffer: Buffer.from(plain) });
    await page.waitForSelector('[data-testid=profiles-import-report] >> text=Replaced 1 template of the same name: "health check".');
    expect(await page.textContent('[data-testid=profiles-import-report]')).toContain('"e2e remote"');
    await atIssueSizesAndSchemes(page, (suffix) => page.screenshot({ path: join(shots, `profiles-import-report-${suffix}.png`), fullPage: true }).then(() => undefined));
    // A file that is not one changes nothing and says so in one sentence.
    await page.setInputFiles('[data-testid=profiles-import]', { name: 'trace.json', mimeType: 'application/json', buffer: Buffer.from('{"format": "bridgescope-trace", "version": 2, "steps": []}') });
    await page.waitForSelector('[data-testid=profiles-transfer-error]');
    expect(await page.textContent('[data-testid=profiles-transfer-error]')).toBe(
      '"trace.json" was not imported, nothing changed. This is not a BridgeScope profiles file (its "format" is not "bridgescope-workspace").',
    );
    expect(await page.$('[data-testid=profiles-import-report]')).toBeNull();
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: join(shots, `profiles-transfer-error-${scheme}-1400x900.png`), fullPage: true });
    }
  }, 60_000);
});
