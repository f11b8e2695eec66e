/**
 * Another team's RPCs in the Trace panel, with the firehose on: mosquitto devices the app did not start and an amqplib
 * worker it did not write. Each RPC the firehose joined gets a verdict, as the app's own do: answered (replied), ignored
 * (server slow, after the 5 s an external request waits), answered on a key that keeps the "/" (reply unroutable, naming
 * the key the device waits on). The list shows them, and the exported trace carries them.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import mqtt from 'mqtt';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { TraceExport } from '../../src/shared/trace';
import { uniqueName } from '../support/names';
import { startThirdPartyWorker } from '../support/third-party-worker';
import { startProcess, type Running } from '../support/processes';
import { openInspectorOn, type OpenInspector } from '../support/inspector';
import { brokerRules } from '../../src/shared/broker-versions';

const broker = inject('broker');
const mqttPort = String(broker.ports.mqtt);
const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const queue = uniqueName('external_rpc');
const device = uniqueName('dev');
const replyTopic = `reply/${device}`;
const ids = { ok: uniqueName('ok'), none: uniqueName('none'), wrong: uniqueName('wrong') };
/** RabbitMQ 3.13+ delivers a non-persistent reply to a QoS 1 subscription at QoS 0 (their worker's replies are). */
const transientAtQos0 = brokerRules(broker.version).transientAtQos0;
let inspector: OpenInspector | undefined;
let page: Page;
let worker: ChannelModel | undefined;
const running: Running[] = [];

function start(command: string, args: string[]): Running {
  const process = startProcess(command, args);
  running.push(process);
  return process;
}

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  // Their worker: answers "ok-", never answers "none-", and answers "wrong-" on the reply topic as it is ("/" kept).
  worker = await startThirdPartyWorker(broker.urls.amqp, queue, (request, channel) => {
    const body = Buffer.from(JSON.stringify({ id: request.id, result: 'done', worker: 'their-worker' }));
    if (request.id === ids.ok || request.id.startsWith('named-')) channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), body);
    else if (request.id === ids.wrong) channel.publish('amq.direct', request.reply_to, body);
  });
  inspector = await openInspectorOn(broker.urls);
  page = inspector.page;
  await page.waitForSelector('[data-testid=status-mqtt][data-state=connected]');
}, 60_000);

afterAll(async () => {
  await page?.uncheck('[data-testid=trace-firehose]').catch(() => undefined);
  await inspector?.close();
  for (const process of running.splice(0)) await process.stop();
  await worker?.close().catch(() => undefined);
});

describe("another team's RPCs in the Trace panel", () => {
  it('each gets its verdict in the list and in the export, as the app\'s own RPCs do', async () => {
    await page.click('[data-testid=tab-trace]');
    await page.check('[data-testid=trace-firehose]');
    await page.waitForSelector('[data-testid=status-tracer][data-state=on]');
    // Their device: subscribed to its reply topic, then three requests.
    const subscriber = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', replyTopic, '-q', '1', '-d', '-i', device]);
    await subscriber.waitForLine(/received SUBACK/);
    for (const id of Object.values(ids)) {
      expect(await start('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', queue, '-i', uniqueName('pub'), '-m', JSON.stringify({ id, reply_to: replyTopic })]).exited).toBe(0);
    }
    const badge = (id: string): string => `[data-testid=trace-row][data-rpc-id="${id}"] [data-testid=verdict-badge]`;
    await page.waitForSelector(`${badge(ids.ok)}[data-code=replied]`);
    // The ignored one and the misdirected one are decided once their 5 s are up.
    await page.waitForSelector(`${badge(ids.none)}[data-code=server-slow]`, { timeout: 20_000 });
    await page.waitForSelector(`${badge(ids.wrong)}[data-code=reply-unroutable]`, { timeout: 20_000 });
    expect((await page.textContent(`[data-testid=trace-row][data-rpc-id="${ids.ok}"] [data-testid=trace-row-origin]`))?.trim()).toBe('external');
    await page.click(`[data-testid=trace-row][data-rpc-id="${ids.wrong}"]`);
    await page.screenshot({ path: join(shots, 'trace-external-verdicts.png') });

    const download = page.waitForEvent('download');
    await page.click('[data-testid=trace-export]');
    const exported = JSON.parse(await readFile(await (await download).path(), 'utf8')) as TraceExport;
    const verdictOf = (id: string) => exported.steps.filter((step) => step.rpcId === id && step.kind === 'rpc.diagnosed').map((step) => (step.kind === 'rpc.diagnosed' ? step.detail.verdict : undefined));
    expect(verdictOf(ids.ok)).toEqual([expect.objectContaining({ code: 'replied' })]);
    expect(verdictOf(ids.none)).toEqual([expect.objectContaining({ code: 'server-slow' })]);
    const [wrong] = verdictOf(ids.wrong);
    expect(wrong?.code).toBe('reply-unroutable');
    // It names the key the device waits on, not only "was the reply topic subscribed?".
    expect(wrong?.message).toContain(`with key "${replyTopic}", not "${replyTopic.replaceAll('/', '.')}"`);
  }, 60_000);

  it('names the device that sent an RPC and says when its reply reached it at QoS 0 (RabbitMQ 3.13+)', async () => {
    // A device that publishes and listens on one connection, as a fleet's devices do.
    const named = uniqueName('named-dev');
    const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId: named, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      await client.subscribeAsync(`reply/${named}`, { qos: 1 });
      const id = uniqueName('named');
      const arrived = new Promise<number>((resolve) => client.once('message', (_topic, _payload, packet) => resolve(packet.qos)));
      await client.publishAsync(queue, JSON.stringify({ id, reply_to: `reply/${named}` }), { qos: 1 });
      const gotQos = await arrived;
      const row = `[data-testid=trace-row][data-rpc-id="${id}"]`;
      await page.waitForSelector(`${row} [data-testid=verdict-badge][data-code=replied]`);
      // The reply's delivery (its last broker step) comes with or before the verdict: the device is named by then.
      await page.waitForSelector(`${row} [data-testid=trace-row-device]`);
      expect((await page.textContent(`${row} [data-testid=trace-row-device]`))?.trim()).toBe(named);
      await page.click(row);
      expect(await page.textContent('[data-testid=trace-selected-device]')).toContain(`from MQTT client ${named}`);
      expect(gotQos).toBe(transientAtQos0 ? 0 : 1);
      // The reply's delivery to the device's subscription is in the timeline (the QoS is said there too).
      await page.waitForSelector(`text=delivered from queue mqtt-subscription-${named}qos1`);
      const warnings = (await page.locator('[data-testid=trace-warnings] li').allTextContents()).join('\n');
      if (transientAtQos0) expect(warnings).toContain(`The reply reached MQTT client "${named}" at QoS 0, though it subscribed at QoS 1`);
      else expect(warnings).not.toContain('at QoS 0');
      await page.screenshot({ path: join(shots, 'trace-external-device-qos.png') });
    } finally {
      await client.endAsync().catch(() => undefined);
    }
  }, 60_000);

  it('keeps apart two devices that use the same id, and a device\'s next RPC after it counted from 1 again', async () => {
    // Their devices number requests from 1, each on its own reply topic; one reboots and starts again at the same id.
    const id = uniqueName('named-count');
    const devices = [uniqueName('named-a'), uniqueName('named-b')];
    const clients = await Promise.all(devices.map((clientId) => mqtt.connectAsync(broker.urls.mqtt, { clientId, protocolVersion: 4, reconnectPeriod: 0 })));
    try {
      /** A device's request; resolves once the broker took it (PUBACK), with its reply's arrival. */
      const send = async (index: number): Promise<Promise<void>> => {
        const client = clients[index] as mqtt.MqttClient;
        const arrived = new Promise<void>((resolve) => client.once('message', () => resolve()));
        await client.publishAsync(queue, JSON.stringify({ id, reply_to: `reply/${devices[index]}` }), { qos: 1 });
        return arrived;
      };
      await Promise.all(clients.map((client, index) => client.subscribeAsync(`reply/${devices[index]}`, { qos: 1 })));
      // A's first, then B's while A's may still be in flight; A reboots and sends its id again once answered.
      const replies = [await send(0), await send(1)];
      await Promise.all(replies);
      await (await send(0));
      const rows = { first: id, other: `${id} (reply/${devices[1]})`, next: `${id} #2` };
      for (const [rpcId, device] of [[rows.first, devices[0]], [rows.other, devices[1]], [rows.next, devices[0]]] as const) {
        const row = `[data-testid=trace-row][data-rpc-id="${rpcId}"]`;
        await page.waitForSelector(`${row} [data-testid=verdict-badge][data-code=replied]`);
        await page.waitForSelector(`${row} [data-testid=trace-row-device]`);
        expect((await page.textContent(`${row} [data-testid=trace-row-device]`))?.trim()).toBe(device);
      }
      // Each has its own request and its own reply, on its own device's reply key.
      await page.click(`[data-testid=trace-row][data-rpc-id="${rows.next}"]`);
      await page.waitForSelector(`text=delivered from queue mqtt-subscription-${devices[0]}qos1`);
      const download = page.waitForEvent('download');
      await page.click('[data-testid=trace-export]');
      const exported = JSON.parse(await readFile(await (await download).path(), 'utf8')) as TraceExport;
      for (const [rpcId, device] of [[rows.first, devices[0]], [rows.other, devices[1]], [rows.next, devices[0]]] as const) {
        const published = exported.steps.filter((step) => step.rpcId === rpcId && step.kind === 'broker.published').map((step) => (step.kind === 'broker.published' ? `${step.detail.leg} ${step.detail.routingKeys[0]}` : ''));
        expect(published).toEqual([`request ${queue}`, `reply reply.${device}`]);
      }
      await page.screenshot({ path: join(shots, 'trace-external-same-id.png') });
    } finally {
      await Promise.all(clients.map((client) => client.endAsync().catch(() => undefined)));
    }
  }, 60_000);

  it('says of a device\'s message with an id and no reply_to that no reply can come, instead of leaving it pending', async () => {
    const id = uniqueName('noreplyto');
    expect(await start('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', queue, '-i', uniqueName('pub'), '-m', JSON.stringify({ id })]).exited).toBe(0);
    const row = `[data-testid=trace-row][data-rpc-id="${id}"]`;
    await page.waitForSelector(`${row} [data-testid=verdict-badge][data-code=undetermined]`);
    await page.click(row);
    expect(await page.textContent('[data-testid=verdict-message]')).toContain('is no request the trace can follow: its JSON body has no "reply_to"');
    await page.screenshot({ path: join(shots, 'trace-external-no-reply-to.png') });
  }, 60_000);
});

