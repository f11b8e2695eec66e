/** Probes that tell whether a broker really accepts AMQP, MQTT and management HTTP connections. */
import amqp from 'amqplib';
import mqtt from 'mqtt';
import { managementRequest } from './management-http';

export interface BrokerUrls {
  amqp: string;
  mqtt: string;
  management: string;
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

export async function probeAmqp(url: string, timeoutMs = 3000): Promise<ProbeResult> {
  try {
    const connection = await amqp.connect(url, { timeout: timeoutMs, noDelay: true });
    connection.on('error', () => undefined);
    await connection.close();
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
    await client.endAsync();
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
