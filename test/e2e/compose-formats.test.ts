/** Issue 13 "Requests and payloads" in Chromium: each payload format sent to a real server, MQTT 5 options, reply views; screenshots of each. */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';
import { atIssueSizesAndSchemes, openInspectorForTest, type OpenInspector } from '../support/inspector';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots', 'requests');
const queue = uniqueName('formats_queue');
let inspector: OpenInspector | undefined;
let page: Page;

beforeAll(async () => {
  inspector = await openInspectorForTest(broker.urls, shots, queue);
  page = inspector.page;
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', queue);
}, 60_000);

afterAll(async () => {
  await inspector?.close();
});

/** The Compose panel light and dark at both window sizes the issue names. */
async function shoot(label: string): Promise<void> {
  await atIssueSizesAndSchemes(page, (suffix) => page.screenshot({ path: join(shots, `${label}-${suffix}.png`), fullPage: true }).then(() => undefined));
}

async function sendAndWait(): Promise<void> {
  await page.focus('[data-testid=compose-topic]');
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached' });
}

/** MQTT 5 came in 3.13: on 3.10.8 the Compose panel says there is none, on 4.0.5 and 4.3.6 what the broker maps. */
const hasMqtt5 = !/^3\.1[0-2]\./.test(broker.version ?? '');

describe(`Compose payload formats and MQTT 5 options, in Chromium on RabbitMQ ${broker.version ?? 'unknown'}`, () => {
  it('JSON: answered; the reply shown pretty with its size, then as a hex dump', async () => {
    await page.fill('[data-testid=compose-timeout]', '3000');
    await sendAndWait();
    await page.waitForSelector('[data-testid=compose-reply]');
    expect(await page.textContent('[data-testid=compose-reply-size]')).toMatch(/^Reply body: \d+ bytes, JSON$/);
    await shoot('json-reply');
    await page.selectOption('[data-testid=compose-reply-view]', 'hex');
    expect(await page.textContent('[data-testid=compose-reply]')).toMatch(/^00000000 {2}7b 22/);
    await shoot('json-reply-as-hex');
    await page.selectOption('[data-testid=compose-reply-view]', 'auto');
  });

  it('hex: a bad digit is a sentence next to the field and Send stays disabled', async () => {
    await page.selectOption('[data-testid=compose-payload-format]', 'hex');
    await page.fill('[data-testid=compose-payload]', '7b zz');
    expect(await page.textContent('[data-testid=compose-payload-error]')).toBe('Not valid hex: "z" is not a hex digit (0-9, a-f; spaces and : may separate bytes).');
    expect(await page.isDisabled('[data-testid=compose-send]')).toBe(true);
    await shoot('hex-invalid');
  });

  it.each([
    ['text', 'not json at all'],
    ['hex', '00 ff 7b 0a'],
    ['base64', 'AP97Cg=='],
  ])('%s: sent as given, and the verdict says the server rejected it', async (format, text) => {
    await page.selectOption('[data-testid=compose-payload-format]', format);
    await page.fill('[data-testid=compose-payload]', text);
    expect(await page.textContent('[data-testid=compose-raw-note]')).toContain('carries no reply_to');
    await sendAndWait();
    await page.waitForSelector('[data-testid=compose-verdict][data-code=request-rejected]');
    await shoot(`${format}-rejected`);
  });

  it('file: picked, read in the page, sent as its bytes, and rejected by the server', async () => {
    await page.selectOption('[data-testid=compose-payload-format]', 'file');
    await page.setInputFiles('[data-testid=compose-payload-file]', { name: 'frame.bin', mimeType: 'application/octet-stream', buffer: Buffer.from([0, 1, 2, 0xff]) });
    await page.waitForSelector('[data-testid=compose-payload-file-name] >> text=frame.bin');
    expect(await page.textContent('[data-testid=compose-payload-size]')).toContain('4 bytes');
    await sendAndWait();
    await page.waitForSelector('[data-testid=compose-verdict][data-code=request-rejected]');
    await shoot('file-rejected');
  });

  it(`MQTT 5 options: folded ${hasMqtt5 ? 'with what the broker maps' : 'on 3.10 with the reason'}; opened, every control labelled`, async () => {
    await page.selectOption('[data-testid=compose-payload-format]', 'json');
    expect(await page.getAttribute('[data-testid=compose-mqtt5]', 'open')).toBeNull();
    expect(await page.textContent('[data-testid=compose-mqtt5-rules]')).toMatch(
      hasMqtt5 ? new RegExp(`RabbitMQ ${broker.version?.replace(/\./g, '\\.')} speaks MQTT 5`) : /RabbitMQ 3\.1\d\.\d+ has no MQTT 5/,
    );
    // The profile (from the environment) asks for no MQTT version: the app connects with 3.1.1, and says where to change it.
    expect(await page.textContent('[data-testid=compose-mqtt5-folded]')).toBe('(this connection speaks MQTT 3.1.1: set MQTT 5 or auto in the profile)');
    await page.click('[data-testid=compose-mqtt5] summary');
    await page.click('[data-testid=compose-user-property-add]');
    await page.fill('[data-testid=compose-user-property-key]', 'tenant');
    await page.fill('[data-testid=compose-user-property-value]', 'acme');
    await page.fill('[data-testid=compose-message-expiry]', '30');
    const unlabelled = await page.evaluate<number>(
      `[...document.querySelectorAll('[data-testid=panel-compose] input, [data-testid=panel-compose] select, [data-testid=panel-compose] textarea')]
        .filter((el) => !el.closest('label') && !el.getAttribute('aria-label') && !el.labels?.length).length`,
    );
    expect(unlabelled).toBe(0);
    await sendAndWait();
    await page.waitForSelector('[data-testid=compose-warnings] >> text=were not sent');
    await shoot('mqtt5-options');
  });
});
