/** Probes that tell whether a broker really accepts AMQP, MQTT and management HTTP connections. */
import amqp from 'amqplib';
import mqtt from 'mqtt';
import type { Socket } from 'node:net';
import { managementRequest } from './management-http';
import { withDeadline } from '../../shared/deadline';

export interface BrokerUrls {
  amqp: string;
  mqtt: string;
  management: string;
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

/**
 * A node that is stopping (or paused) can accept a connection and then never answer its close: each probe gives its
 * goodbye `timeoutMs` too, then drops the socket and says the node did not answer. (A probe that waited for ever kept the
 * app's sandbox check from ever seeing the node stopped.)
 */
export async function probeAmqp(url: string, timeoutMs = 3000): Promise<ProbeResult> {
  try {
    const connection = await amqp.connect(url, { timeout: timeoutMs, noDelay: true });
    connection.on('error', () => undefined);
    const closed = await withDeadline(connection.close().catch(() => undefined), timeoutMs);
    if (!closed.done) {
      // amqplib keeps the socket on the connection object; its types do not show it.
      (connection.connection as unknown as { stream?: Socket }).stream?.destroy();
      return { ok: false, reason: `it accepted a connection but did not answer its close within ${timeoutMs} ms` };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

export async function probeMqtt(url: string, timeoutMs = 3000): Promise<ProbeResult> {
  try {
    const client = await mqtt.connectAsync(url, {
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      clientId: `bridgescope-probe-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    });
    const ended = await withDeadline(client.endAsync().catch(() => undefined), timeoutMs);
    if (!ended.done) {
      client.end(true);
      return { ok: false, reason: `it accepted a connection but did not let it end within ${timeoutMs} ms` };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

export async function probeManagement(url: string, timeoutMs = 3000): Promise<ProbeResult> {
  try {
    await managementRequest(url, '/api/overview', { timeoutMs });
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/** All three probes at once; the first failing reason wins. */
export async function probeAll(urls: BrokerUrls, timeoutMs = 3000): Promise<ProbeResult> {
  const results = await Promise.all([
    probeAmqp(urls.amqp, timeoutMs),
    probeMqtt(urls.mqtt, timeoutMs),
    probeManagement(urls.management, timeoutMs),
  ]);
  const names = ['AMQP', 'MQTT', 'management HTTP'];
  for (const [index, result] of results.entries()) {
    if (!result.ok) return { ok: false, reason: `${names[index]}: ${result.reason}` };
  }
  return { ok: true };
}
