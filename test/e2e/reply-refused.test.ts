/**
 * A reply the broker refuses, seen where the user looks: the device's subscription queue is full and rejects new
 * messages (a policy: max-length 0, overflow reject-publish), so RabbitMQ nacks the embedded server's reply. The server
 * puts the request back, publishes the same reply again without running the handler, and rejects the request at the
 * second nack; Compose, History and Trace say "reply refused", and the Server log says what happened. In a vhost of its
 * own: the policy touches every MQTT subscription queue of its vhost.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementRequest } from '../../src/core/broker/management-http';
import { uniqueName } from '../support/names';
import { openInspectorOn, startServerInUi, type OpenInspector } from '../support/inspector';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const queue = uniqueName('rpc_refused');
let vhost: TestVhost;
let page: Page;
let inspector: OpenInspector | undefined;

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  vhost = await createTestVhost(broker.urls, 'refused');
  await managementRequest(broker.urls.management, `/api/policies/${encodeURIComponent(vhost.name)}/full-subscriptions`, {
    method: 'PUT',
    body: { pattern: '^mqtt-subscription-', 'apply-to': 'queues', definition: { 'max-length': 0, overflow: 'reject-publish' } },
  });
  // The MQTT plugin takes the vhost from a "vhost:user" user name.
  const mqttUser = encodeURIComponent(`${vhost.name}:guest`);
  inspector = await openInspectorOn({ amqp: vhost.amqpUrl, mqtt: broker.urls.mqtt.replace('mqtt://', `mqtt://${mqttUser}:guest@`), management: broker.urls.management });
  ({ page } = inspector);
  await page.click('[data-testid=tab-connections]');
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
  await startServerInUi(page, queue);
}, 90_000);

afterAll(async () => {
  await inspector?.close();
  await vhost?.remove();
});

describe('a reply the broker refuses (nack)', () => {
  it('is published again once without running the handler, then the request is rejected; Compose and Trace say "reply refused"', async () => {
    await page.click('[data-testid=tab-compose]');
    await page.fill('[data-testid=compose-topic]', queue);
    await page.fill('[data-testid=compose-timeout]', '3000');
    await page.fill('[data-testid=compose-payload]', '{"params": {"refused": true}}');
    await page.click('[data-testid=compose-send]');
    await page.waitForSelector('[data-testid=compose-waiting]', { state: 'detached', timeout: 20_000 });
    const verdict = await page.waitForSelector('[data-testid=compose-verdict]');
    expect(await verdict.getAttribute('data-code')).toBe('reply-refused');
    const message = await page.textContent('[data-testid=compose-verdict] [data-testid=verdict-message]');
    expect(message).toContain("The broker refused the server's reply");
    expect(message).toContain('x-overflow reject-publish');
    expect(await page.getAttribute('[data-testid=compose-verdict] [data-testid=verdict-hop][data-hop=reply-queue]', 'data-mark')).toBe('stopped');
    expect(await page.locator('[data-testid=history-row]').first().getAttribute('data-code')).toBe('reply-refused');
    await page.screenshot({ path: join(shots, 'reply-refused-compose.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(shots, 'reply-refused-compose-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // The server's own account: answered once, the same reply again from memory, then the rejection.
    await page.click('[data-testid=tab-server]');
    const log = page.locator('[data-testid=server-log-row]');
    await page.waitForSelector('[data-testid=server-log-row] >> text=rejected without requeue');
    const lines = await log.allTextContents();
    expect(lines.some((line) => line.includes('came back after the broker nacked its reply: published again, handler not run'))).toBe(true);
    expect(lines.filter((line) => /answered (in|with)/.test(line))).toHaveLength(1);
    await page.screenshot({ path: join(shots, 'reply-refused-server.png'), fullPage: true });

    await page.click('[data-testid=tab-compose]');
    await page.click('[data-testid=compose-open-trace]');
    await page.waitForSelector('[data-testid=panel-trace]');
    const traced = await page.waitForSelector('[data-testid=trace-verdict]');
    expect(await traced.getAttribute('data-code')).toBe('reply-refused');
    expect(await page.textContent('[data-testid=panel-trace]')).toContain('the server put it back on its queue when the broker nacked its reply');
    await page.screenshot({ path: join(shots, 'reply-refused-trace.png'), fullPage: true });
  }, 60_000);
});
