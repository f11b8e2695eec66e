/**
 * Issue 26, "Trust" item 3: the sandbox broker this `bridgescope ui` started is stopped on Ctrl-C, also after the user
 * pressed "Connect to the sandbox broker" in the page (that press used to make the node look like someone else's).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { sandboxStatus, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { isProcessAlive } from '../../src/core/processes';
import { cliPath } from '../support/cli';
import { launchChromium } from '../support/inspector';
import { claimTestBroker } from '../support/reap';
import { startGroupLeader, type GroupLeader } from '../support/processes';

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** `bridgescope ui` as a process-group leader, without the run's broker URLs (it starts its own sandbox); killed after the test. */
function startUi(dir: string): GroupLeader {
  const env = { ...process.env };
  for (const name of ['BRIDGESCOPE_AMQP_URL', 'BRIDGESCOPE_MQTT_URL', 'BRIDGESCOPE_MANAGEMENT_URL', 'BRIDGESCOPE_SANDBOX_DIR']) delete env[name];
  const config = mkdtempSync(join(tmpdir(), 'bridgescope-config-'));
  env.XDG_CONFIG_HOME = config;
  const leader = startGroupLeader(process.execPath, [cliPath, 'ui', '--sandbox-dir', dir], env);
  cleanups.push(() => rm(config, { recursive: true, force: true }));
  cleanups.push(() => leader.kill());
  return leader;
}

async function sandboxFolder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-ui-'));
  await claimTestBroker(dir);
  cleanups.push(async () => {
    await stopSandbox(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

async function processesOfNode(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const commandLine = await readFile(join('/proc', entry, 'cmdline'), 'utf8').catch(() => '');
    if (commandLine.includes(text)) found.push(Number(entry));
  }
  return found;
}

/** Starts `ui` on its own sandbox, opens its page and presses "Connect to the sandbox broker" there, as the user did. */
async function uiAfterConnectToSandbox(): Promise<{ ui: GroupLeader; dir: string; node: SandboxInfo }> {
  const dir = await sandboxFolder();
  const ui = startUi(dir);
  const ready = await ui.waitForLine(/BridgeScope is ready: http/);
  const status = await sandboxStatus(dir);
  if (status.state !== 'running') throw new Error(`the sandbox broker in ${dir} is ${status.state}`);
  const browser: Browser = await launchChromium();
  cleanups.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(/(http:\/\/\S+)/.exec(ready)?.[1] as string);
  await page.waitForSelector('[data-app-state="ready"]');
  await page.click('[data-testid=tab-connections]');
  await page.waitForSelector('[data-testid=sandbox-start] >> text=Connect to the sandbox broker');
  await page.click('[data-testid=sandbox-start]');
  await page.waitForSelector('[data-testid=connections-busy]', { state: 'detached' });
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
  return { ui, dir, node: status.info };
}

async function expectNodeGone(dir: string, node: SandboxInfo): Promise<void> {
  expect((await sandboxStatus(dir)).state).toBe('stopped');
  expect(isProcessAlive(node.pid)).toBe(false);
  expect(await processesOfNode(node.nodeName)).toEqual([]);
}

describe('bridgescope ui stops the sandbox broker it started, after "Connect to the sandbox broker" (issue 26, item 3)', () => {
  it('on Ctrl-C to the ui process alone', async () => {
    const { ui, dir, node } = await uiAfterConnectToSandbox();
    process.kill(ui.pid, 'SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    expect(ui.lines).toContain('Stopping: stop the sandbox broker this command started...');
    await expectNodeGone(dir, node);
  }, 120_000);

  it('on Ctrl-C to the whole process group, and a second Ctrl-C during the cleanup', async () => {
    const { ui, dir, node } = await uiAfterConnectToSandbox();
    ui.signalGroup('SIGINT');
    await ui.waitForLine(/^Stopping/);
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    await expectNodeGone(dir, node);
  }, 120_000);
});
