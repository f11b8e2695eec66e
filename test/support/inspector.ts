/** The end-to-end tests' way in: `bridgescope ui` as a user runs it, and Debian's Chromium open on its page. */
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

/** Starts `bridgescope ui` with `args` and `env`, opens its printed URL at 1400x900 and waits until the app is ready. */
export async function openInspector(args: string[], env: Record<string, string> = {}): Promise<OpenInspector> {
  const ui = startProcess('env', [...Object.entries(env).map(([name, value]) => `${name}=${value}`), process.execPath, cliPath, 'ui', ...args]);
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
    },
  };
}
