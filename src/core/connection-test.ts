/** "Test connection": every URL of a profile tried once, on connections of its own, each answered by one line a person reads. */
import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { ConnectionProfile, ConnectionTestLine } from '../shared/contract';
import { redactUrl } from '../shared/redact';
import { toErrorShape } from './errors';
import { brokerTargets, tlsFiles, type TlsFiles } from './connection-details';
import { amqpConnectOptions, amqpTlsSocketOptions, connectAmqp, explainAmqpError, closeAmqpBounded } from './links/amqp-link';
import { MqttLink } from './links/mqtt-link';
import { ManagementApi } from './broker/management-api';
import { rabbitSawSubscription, vhostHint } from './broker/checks';
import { brokerRules } from '../shared/broker-versions';

const TLS_SCHEMES = new Set(['amqps:', 'mqtts:', 'wss:', 'https:']);

const isTls = (url: string): boolean => {
  try {
    return TLS_SCHEMES.has(new URL(url).protocol);
  } catch {
    return false;
  }
};

/** Whether the socket's peer certificate was checked against the CAs (false when verification was off and it failed). */
const tlsOutcome = (socket: unknown): ConnectionTestLine['tls'] => ((socket as Partial<TLSSocket> | undefined)?.authorized ? 'verified' : 'not-verified');

const tlsSentence = (tls: ConnectionTestLine['tls']): string =>
  tls === undefined ? '' : tls === 'verified' ? ', certificate verified' : ', certificate NOT verified (verification is off)';

async function testAmqp(url: string, tls: TlsFiles | undefined): Promise<ConnectionTestLine> {
  const line = { protocol: 'amqp' as const, url: redactUrl(url) };
  try {
    const options = amqpConnectOptions(url, 0);
    const model = await connectAmqp(options, { ...amqpTlsSocketOptions(tls), noDelay: true, timeout: 5000, clientProperties: { connection_name: 'bridgescope-connection-test' } });
    // amqplib keeps the socket on the connection object; its types do not show it.
    const socket = (model.connection as unknown as { stream?: unknown }).stream;
    const tlsState = isTls(url) ? tlsOutcome(socket) : undefined;
    await closeAmqpBounded(model, model, 2000);
    return {
      ...line,
      ok: true,
      sentence: `Reached and signed in as "${options.username}" on vhost "${options.vhost}"${tlsSentence(tlsState)}.`,
      ...(tlsState ? { tls: tlsState } : {}),
    };
  } catch (err) {
    return { ...line, ok: false, sentence: explainAmqpError(err, url).message };
  }
}

/**
 * Whether the RabbitMQ behind `amqpUrl` sees the MQTT client `clientId`, subscribed just now: the check `probe` makes
 * (its MQTT plugin keeps a queue per subscribing client). Undefined when that RabbitMQ could not be asked.
 */
async function rabbitSeesClient(amqpUrl: string, clientId: string, tls: TlsFiles | undefined): Promise<boolean | undefined> {
  let model;
  try {
    model = await connectAmqp(amqpConnectOptions(amqpUrl, 0), { ...amqpTlsSocketOptions(tls), noDelay: true, timeout: 5000, clientProperties: { connection_name: 'bridgescope-connection-test' } });
  } catch {
    return undefined;
  }
  try {
    return await rabbitSawSubscription(model, clientId);
  } catch {
    return undefined;
  } finally {
    await closeAmqpBounded(model, model, 2000);
  }
}

async function testMqtt(url: string, profile: ConnectionProfile, tls: TlsFiles | undefined, amqpUrl: string | undefined): Promise<ConnectionTestLine> {
  const line = { protocol: 'mqtt' as const, url: redactUrl(url) };
  const clientId = `${profile.mqttClientId || 'bridgescope'}-test-${randomUUID().slice(0, 6)}`;
  // Its own client id and a clean session: the open connection (same broker, maybe the same id) is left alone.
  const link = new MqttLink({
    url,
    clientId,
    protocolVersion: profile.mqttVersion ?? 4,
    connectTimeoutMs: 5000,
    ...(profile.keepaliveSeconds !== undefined ? { keepaliveSeconds: profile.keepaliveSeconds } : {}),
  });
  link.useDetails({ ...(tls ? { tls } : {}), clean: true });
  try {
    await link.open();
    const version = link.protocolVersion === 5 ? '5' : '3.1.1';
    const tlsState = isTls(url) ? tlsOutcome(link.client.stream) : undefined;
    const fellBack = profile.mqttVersion === 'auto' && version === '3.1.1' ? ' (the broker refused MQTT 5)' : '';
    // Signed in is not enough: the MQTT URL must reach the RabbitMQ of the AMQP URL, not another broker on its port.
    if (amqpUrl !== undefined) {
      const subscribed = await Promise.race([
        link.subscribe(`bridgescope/connection-test/${randomUUID()}`, 1).then(() => true, () => false),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 3000).unref()),
      ]);
      const seen = subscribed ? await rabbitSeesClient(amqpUrl, clientId, tls) : undefined;
      if (seen === false) {
        return {
          ...line,
          ok: false,
          sentence: `An MQTT broker answered and accepted MQTT ${version}, but the RabbitMQ at ${redactUrl(amqpUrl)} never saw this client: they are not the same broker (is ${redactUrl(url)} a Mosquitto?)${vhostHint(amqpUrl)}.`,
          mqttVersion: version,
        };
      }
    }
    return {
      ...line,
      ok: true,
      sentence: `Reached and signed in; MQTT ${version} accepted${fellBack}${tlsSentence(tlsState)}.`,
      mqttVersion: version,
      ...(tlsState ? { tls: tlsState } : {}),
    };
  } catch (err) {
    return { ...line, ok: false, sentence: toErrorShape(err).message };
  } finally {
    await link.close();
  }
}

async function testManagement(url: string, vhost: string, tls: TlsFiles | undefined): Promise<ConnectionTestLine> {
  const line = { protocol: 'management' as const, url: redactUrl(url) };
  try {
    const overview = await new ManagementApi(url, vhost, undefined, tls).overview();
    const version = overview.rabbitmqVersion;
    return {
      ...line,
      ok: true,
      // The node's own name, as every other view names it (the API gives it to administrators). Never the cluster name:
      // RabbitMQ's default one carries the machine's host name (…@vm) where the node is …@localhost, read as two brokers.
      sentence: `Reached and signed in: RabbitMQ ${version}${overview.node ? ` (node ${overview.node})` : ''}.`,
      ...(version !== 'unknown' ? { brokerVersion: version } : {}),
    };
  } catch (err) {
    return { ...line, ok: false, sentence: toErrorShape(err).message };
  }
}

/** Tries every URL of the profile once (all at once), never touching the open connection; never throws. */
export async function testConnection(profile: ConnectionProfile): Promise<ConnectionTestLine[]> {
  const targets = brokerTargets(profile);
  let tls: TlsFiles | undefined;
  let tlsProblem: string | undefined;
  try {
    tls = await tlsFiles(profile);
  } catch (err) {
    tlsProblem = toErrorShape(err).message;
  }
  // Unreadable TLS files fail the TLS URLs only, with that sentence; plain URLs are still tried.
  const guarded = (protocol: ConnectionTestLine['protocol'], url: string, run: () => Promise<ConnectionTestLine>): Promise<ConnectionTestLine> =>
    tlsProblem && isTls(url) ? Promise.resolve({ protocol, url: redactUrl(url), ok: false, sentence: tlsProblem }) : run();
  const lines = await Promise.all([
    ...targets.amqp.map((url) => guarded('amqp', url, () => testAmqp(url, tls))),
    ...targets.mqtt.map((url) => guarded('mqtt', url, () => testMqtt(url, profile, tls, targets.amqp[0]))),
    ...targets.management.map((url) => guarded('management', url, () => testManagement(url, profile.vhost, tls))),
  ]);
  return lines.map((line) => contradicted(line, lines));
}

/** An MQTT 5 acceptance next to a management API naming a RabbitMQ without MQTT 5 (before 3.13): that MQTT endpoint is another broker. */
function contradicted(line: ConnectionTestLine, lines: ConnectionTestLine[]): ConnectionTestLine {
  if (line.protocol !== 'mqtt' || !line.ok || line.mqttVersion !== '5') return line;
  const management = lines.find((other) => other.protocol === 'management' && other.ok && other.brokerVersion !== undefined);
  if (!management?.brokerVersion || brokerRules(management.brokerVersion).mqtt5) return line;
  return {
    ...line,
    ok: false,
    sentence: `An MQTT broker answered and accepted MQTT 5, but RabbitMQ ${management.brokerVersion} (its management API at ${management.url}) has no MQTT 5: the MQTT URL reaches another broker (a Mosquitto?).`,
  };
}
