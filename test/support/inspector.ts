/** The end-to-end tests' way in: `bridgescope ui` as a user runs it, and Debian's Chromium open on its page. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cliPath } from './cli';
import { startProcess, type Running } from './processes';

export interface OpenInspector {
  ui: Running;
  browser: Browser;
  page: Page;
  url: string;
  close(): Promise<void>;
}

/** Debian's chromium, headless, without the background traffic this machine's closed network refuses. */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', ...extraArgs],
  });
}

/**
 * Starts `bridgescope ui` with `args` and `env`, opens its printed URL at 1400x900 and waits until the app is ready. Each
 * one gets a data dir of its own (history, token, port) unless `args` names one.
 */
export async function openInspector(args: string[], env: Record<string, string> = {}): Promise<OpenInspector> {
  const ownDir = args.includes('--data-dir') ? undefined : await mkdtemp(join(tmpdir(), 'bridgescope-ui-data-'));
  const dataDir = ownDir === undefined ? [] : ['--data-dir', ownDir];
  const ui = startProcess('env', [...Object.entries(env).map(([name, value]) => `${name}=${value}`), process.execPath, cliPath, 'ui', ...dataDir, ...args]);
  const ready = await ui.waitForLine(/BridgeScope is ready: http/);
  const url = /(http:\/\/\S+)/.exec(ready)?.[1] as string;
  const browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url);
  await page.waitForSelector('[data-app-state="ready"]');
  return {
    ui,
    browser,
    page,
    url,
    async close() {
      await browser.close();
      await ui.stop();
      if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true });
    },
  };
}

/** `bridgescope ui` pointed at a broker through the environment, as `npm run web` runs it after a build. */
export function openInspectorOn(urls: { amqp: string; mqtt: string; management: string }, args: string[] = []): Promise<OpenInspector> {
  return openInspector(args, {
    BRIDGESCOPE_AMQP_URL: urls.amqp,
    BRIDGESCOPE_MQTT_URL: urls.mqtt,
    BRIDGESCOPE_MANAGEMENT_URL: urls.management,
  });
}

/**
 * An end-to-end test's inspector: its screenshot folder made, `bridgescope ui` on the run's broker, the MQTT link up,
 * and, given a queue, the embedded server started on it.
 */
export async function openInspectorForTest(urls: { amqp: string; mqtt: string; management: string }, shots: string, queue?: string): Promise<OpenInspector> {
  await mkdir(shots, { recursive: true });
  const inspector = await openInspectorOn(urls);
  await inspector.page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
  if (queue !== undefined) await startServerInUi(inspector.page, queue);
  return inspector;
}

/** Starts the embedded server from the Server panel on `queue` and waits until it runs. */
export async function startServerInUi(page: Page, queue: string, handler?: string): Promise<void> {
  await page.click('[data-testid=tab-server]');
  await page.fill('[data-testid=server-queue]', queue);
  if (handler !== undefined) await page.fill('[data-testid=server-handler]', handler);
  await page.click('[data-testid=server-toggle]');
  await page.waitForSelector('[data-testid=server-state] >> text=running');
}

/** Switches the broker firehose on from the Trace panel and waits until the header says so. */
export async function firehoseOnInUi(page: Page): Promise<void> {
  await page.click('[data-testid=tab-trace]');
  await page.check('[data-testid=trace-firehose]');
  await page.waitForSelector('[data-testid=status-tracer][data-state=on]');
}

/**
 * Each of the two window sizes the inspector issue names, light then dark: `shoot` takes the screenshot(s) of one
 * combination, named by the suffix (`dark-1024x700`). The page is left at 1400x900, light.
 */
export async function atIssueSizesAndSchemes(page: Page, shoot: (suffix: string) => Promise<void>): Promise<void> {
  for (const [width, height] of [
    [1400, 900],
    [1024, 700],
  ] as const) {
    await page.setViewportSize({ width, height });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      await shoot(`${scheme}-${width}x${height}`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.emulateMedia({ colorScheme: 'light' });
}
