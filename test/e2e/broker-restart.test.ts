/** A broker restarted under `bridgescope ui`: the server and the firehose resume, and the UI says so at every stage. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxStatus, startSandbox, stopSandbox } from '../../src/core/broker/sandbox';
import { uniqueName } from '../support/names';
import { firehoseOnInUi, openInspector, startServerInUi, type OpenInspector } from '../support/inspector';

const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const queue = uniqueName('restart_queue');
let dir: string;
let inspector: OpenInspector | undefined;
let page: Page;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  // A sandbox of the UI's own, so this test can restart it without disturbing the run's shared broker.
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-restart-'));
  inspector = await openInspector(['--sandbox-dir', dir]);
  page = inspector.page;
}, 120_000);

afterAll(async () => {
  await inspector?.close();
  // The node the test restarted is not the UI's to stop: the test started it.
  if ((await sandboxStatus(dir)).state !== 'stopped') await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 120_000);

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function sendAndAwaitReply(temperature: number): Promise<void> {
  await page.click('[data-testid=tab-compose]');
  await page.fill('[data-testid=compose-topic]', queue);
  await page.fill('[data-testid=compose-payload]', `{"params": {"temperature": ${temperature}}}`);
  await page.click('[data-testid=compose-send]');
  await page.waitForSelector(`[data-testid=compose-reply] >> text=${temperature}`);
}

describe('a broker restarted under the inspector', () => {
  it('serves and traces an RPC before the restart', async () => {
    await page.waitForSelector('[data-testid=status-amqp][data-state=connected]');
    await startServerInUi(page, queue);
    await firehoseOnInUi(page);
    await sendAndAwaitReply(20.5);
  }, 60_000);

  it('shows the server and the firehose reconnecting while the broker is down, and the node as stopped', async () => {
    await stopSandbox(dir);
    await page.waitForSelector('[data-testid=status-amqp][data-state=reconnecting]');
    await page.waitForSelector('[data-testid=status-tracer][data-state=reconnecting]');
    await page.click('[data-testid=tab-server]');
    await page.waitForSelector('[data-testid=server-state] >> text=reconnecting');
    await shot('restart-server-reconnecting');
    await page.click('[data-testid=tab-connections]');
    await page.waitForSelector('[data-testid=sandbox-state] >> text=stopped');
    await shot('restart-connections-stopped');
  }, 60_000);

  it('resumes the server and the firehose once the broker is back on the same ports, and traces a new RPC through the broker', async () => {
    await startSandbox({ dir, timeoutMs: 120_000 });
    await page.waitForSelector('[data-testid=status-amqp][data-state=connected]', { timeout: 60_000 });
    await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]', { timeout: 60_000 });
    await page.waitForSelector('[data-testid=status-tracer][data-state=on]', { timeout: 60_000 });
    await page.click('[data-testid=tab-server]');
    await page.waitForSelector('[data-testid=server-state] >> text=running', { timeout: 60_000 });
    await shot('restart-server-resumed');
    await sendAndAwaitReply(22.5);
    await page.click('[data-testid=tab-trace]');
    // The newest RPC is listed first.
    await page.click('[data-testid=trace-row]');
    await page.waitForSelector('[data-testid=trace-step][data-kind="broker.delivered"] >> text=mqtt-subscription');
    expect(await page.$$eval('[data-testid=trace-step]', (steps) => steps.map((step) => step.getAttribute('data-kind')))).toEqual(
      expect.arrayContaining(['broker.published', 'worker.received', 'reply.published', 'mqtt.reply.received']),
    );
    await shot('restart-trace-resumed');
  }, 180_000);
});
