/** The exchange probe (where does the MQTT plugin really publish?) and the pre-flight checks before a request. */
import { randomUUID } from 'node:crypto';
import type amqp from 'amqplib';
import type { BindingInfo, CheckLine, ConsumerInfo, ProbeVerdict, QueueInfo } from '../../shared/broker';
import { isWatchTapQueue, subscriptionQueueName } from '../../shared/rabbitmq-mqtt';
import { brokerRules, describeBrokerRules, preflightVersionFindings, type BrokerRules, type PreflightPlan } from '../../shared/broker-versions';
import type { ReplyStrategy } from '../../shared/rpc';
import { MqttLink } from '../links/mqtt-link';
import { amqpConnectOptions, connectFirstAmqp } from '../links/amqp-link';
import { skippedSentence, usingSentence } from '../links/in-turn';
import { tlsSocketOptions, type TlsFiles } from '../connection-details';
import { lintTopic, topicToRoutingKey, type TopicMapOptions } from '../../shared/topic-map';
import { toErrorShape } from '../errors';
import type { ManagementApi } from './management-api';
import { redactUrl } from './management-http';
import { DEFAULT_MQTT_EXCHANGE, RABBITMQ_MQTT_EXCHANGE } from '../../shared/defaults';

/** AMQP topic-exchange matching: `*` is exactly one word, `#` zero or more. */
export function topicPatternMatches(pattern: string, routingKey: string): boolean {
  const words = routingKey.split('.');
  const parts = pattern.split('.');
  const match = (p: number, w: number): boolean => {
    if (p === parts.length) return w === words.length;
    const part = parts[p];
    if (part === '#') {
      for (let skip = w; skip <= words.length; skip += 1) if (match(p + 1, skip)) return true;
      return false;
    }
    if (w === words.length) return false;
    return (part === '*' || part === words[w]) && match(p + 1, w + 1);
  };
  return match(0, 0);
}

/** Whether a binding with `bindingKey` on an exchange of `exchangeType` routes `routingKey`. */
export function bindingRoutes(exchangeType: string, bindingKey: string, routingKey: string): boolean {
  if (exchangeType === 'topic') return topicPatternMatches(bindingKey, routingKey);
  if (exchangeType === 'fanout') return true;
  return bindingKey === routingKey;
}

const WILDCARD_KEY = /(^|\.)(\*|#)(\.|$)/;

/** Warnings for MQTT wildcard subscriptions bound to a direct exchange, where they are literal keys. */
export function wildcardOnDirectLines(exchange: string, exchangeType: string | undefined, bindings: BindingInfo[]): CheckLine[] {
  if (exchangeType !== 'direct') return [];
  return bindings
    .filter((binding) => binding.mqttClientId !== undefined && WILDCARD_KEY.test(binding.bindingKey))
    .map((binding) => ({
      check: 'wildcard subscription',
      status: 'warn' as const,
      message: `MQTT client "${binding.mqttClientId}" subscribed with a wildcard (binding key "${binding.bindingKey}"), but ${exchange} is a direct exchange: the key is literal and matches nothing.`,
    }));
}

export interface ProbeOptions {
  mqttUrl: string;
  amqpUrl: string;
  /** other nodes of the cluster, tried in turn when one cannot be reached or never answers */
  fallbackMqttUrls?: readonly string[];
  fallbackAmqpUrls?: readonly string[];
  /** told when nodes of a list did not answer: one sentence naming them and the node in use */
  onSkipped?: (sentence: string) => void;
  configuredExchange: string;
  api?: ManagementApi;
  timeoutMs?: number;
  /** for amqps:// and mqtts:// (wss://): the profile's CA, client certificate and key, and whether certificates are verified */
  tls?: TlsFiles;
}

/** Live consumer counts through a passive queue.declare on a short-lived channel. */
export function amqpConsumerCounter(model: amqp.ChannelModel): (queue: string) => Promise<number> {
  return async (queue) => {
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).consumerCount;
    } finally {
      await channel.close().catch(() => undefined);
    }
  };
}

/** The management API, if it answers: a refusal or an outage is a line of the verdict, not a silent gap. */
async function usableManagementApi(api: ManagementApi | undefined, lines: CheckLine[]): Promise<{ api?: ManagementApi; protocols?: string[] }> {
  if (!api) return {};
  try {
    return { api, protocols: (await api.overview()).protocols };
  } catch (err) {
    const failure = toErrorShape(err);
    if (failure.code === 'auth') lines.push({ check: 'management API', status: 'fail', message: failure.message, cause: 'auth' });
    else lines.push({ check: 'management API', status: 'warn', message: `${failure.message.replace(/\.$/, '')}: exchange types and bindings are not checked.` });
    return {};
  }
}

/** Why the probe's MQTT connection failed, told with what the RabbitMQ side knows about its MQTT listener. */
function mqttConnectLine(err: unknown, amqpUrl: string, protocols: string[] | undefined): CheckLine {
  const failure = toErrorShape(err);
  const rabbit = `the RabbitMQ at ${redactUrl(amqpUrl)}`;
  const reason = failure.message.replace(/\.$/, '');
  let message: string;
  if (failure.code === 'auth' || failure.code === 'bad-input') message = failure.message;
  else if (protocols && !protocols.includes('mqtt')) message = `${capitalize(rabbit)} has no MQTT listener (is the rabbitmq_mqtt plugin enabled?): ${lowerFirst(reason)}.`;
  else if (protocols) message = `${reason}; ${rabbit} does have an MQTT listener, so check the MQTT URL's host and port.`;
  else message = `${reason}; if it should be ${rabbit}, is the rabbitmq_mqtt plugin enabled?`;
  return { check: 'MQTT connection', status: 'fail', message, ...(failure.code === 'auth' ? { cause: 'auth' as const } : {}) };
}

const capitalize = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);
const lowerFirst = (text: string): string => text.charAt(0).toLowerCase() + text.slice(1);

/** Whether RabbitMQ holds the queue its MQTT plugin makes for our probe client's subscription: did our MQTT client reach it? */
export async function rabbitSawSubscription(connection: amqp.ChannelModel, clientId: string): Promise<boolean> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  try {
    await channel.checkQueue(subscriptionQueueName(clientId, 1));
    return true;
  } catch (err) {
    // 404 is "no such queue"; anything else (e.g. 405 locked by its owner) means it exists.
    return !/NOT_FOUND|404/.test((err as Error).message);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Publishes one MQTT probe and sees which candidate exchange receives it, through temporary queues. */
export async function probeMqttExchange(options: ProbeOptions): Promise<ProbeVerdict> {
  const candidates = [...new Set([DEFAULT_MQTT_EXCHANGE, RABBITMQ_MQTT_EXCHANGE, options.configuredExchange])];
  const token = randomUUID();
  const topic = `bridgescope/probe/${token}`;
  const routingKey = topicToRoutingKey(topic);
  const lines: CheckLine[] = [];
  const verdict = (observed?: string, exchangeType?: string): ProbeVerdict => ({
    observedExchange: observed,
    configuredExchange: options.configuredExchange,
    exchangeType,
    lines,
  });
  const { api, protocols } = await usableManagementApi(options.api, lines);
  const reached = await connectFirstAmqp([options.amqpUrl, ...(options.fallbackAmqpUrls ?? [])], { ...tlsSocketOptions(options.tls), noDelay: true }, 10);
  const connection = reached.value;
  // From here on, the node in use is the one named.
  const amqpUrl = reached.url;
  const skipped = skippedSentence(reached);
  if (skipped) options.onSkipped?.(skipped);
  const clientId = `bridgescope-probe-${token.slice(0, 8)}`;
  const link = new MqttLink({ url: options.mqttUrl, ...(options.fallbackMqttUrls?.length ? { fallbackUrls: options.fallbackMqttUrls } : {}), clientId });
  if (options.tls) link.useDetails({ tls: options.tls });
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    let observed: string | undefined;
    /** one of our temporary queues: it lives on the node of our AMQP connection */
    let amqpQueue: string | undefined;
    let resolveArrival: () => void = () => undefined;
    const arrival = new Promise<void>((resolve) => (resolveArrival = resolve));
    for (const exchange of candidates) {
      const probeChannel = await connection.createChannel();
      probeChannel.on('error', () => undefined);
      try {
        await probeChannel.checkExchange(exchange);
      } catch {
        continue; // a configured exchange that does not exist is reported below
      }
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      amqpQueue ??= queue;
      await channel.bindQueue(queue, exchange, routingKey);
      await channel.consume(queue, () => {
        observed ??= exchange;
        resolveArrival();
      }, { noAck: true });
    }
    try {
      await link.open();
    } catch (err) {
      lines.unshift(mqttConnectLine(err, amqpUrl, protocols));
      return verdict();
    }
    if (link.currentUrl !== options.mqttUrl) options.onSkipped?.(usingSentence(link.currentUrl, [`The MQTT node ${redactUrl(options.mqttUrl)} could not be reached or did not answer.`]));
    // Our own subscription leaves a trace on RabbitMQ (its subscription queue) even when mqtt.exchange is elsewhere.
    let echoed = false;
    link.on('message', (messageTopic) => {
      if (messageTopic === topic) echoed = true;
    });
    const timeoutMs = options.timeoutMs ?? 3000;
    // Bounded: an MQTT broker that never sends SUBACK or PUBACK must not hang the probe.
    const within = (step: Promise<unknown>): Promise<unknown> =>
      Promise.race([step.catch(() => undefined), new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    await within(link.subscribe(topic, 1));
    let acknowledged = false;
    await within(link.client.publishAsync(topic, 'bridgescope exchange probe', { qos: 1 }).then(() => (acknowledged = true)));
    await within(arrival);

    const exchangeType = observed ? await exchangeTypeOf(observed, api) : undefined;
    const mqttUrl = redactUrl(link.currentUrl);
    if (observed === undefined && !(await rabbitSawSubscription(connection, clientId))) {
      lines.unshift({
        check: 'MQTT exchange',
        status: 'fail',
        message: `The MQTT broker at ${mqttUrl} ${acknowledged ? 'accepted our message' : `did not acknowledge our message within ${timeoutMs} ms`} but the RabbitMQ at ${redactUrl(amqpUrl)} never saw it: they are not the same broker (is ${mqttUrl} a Mosquitto?)${vhostHint(amqpUrl)}.`,
      });
    } else if (observed === undefined) {
      lines.unshift({
        check: 'MQTT exchange',
        status: 'fail',
        message: `The probe reached RabbitMQ${echoed ? ' (it came back to our own subscription)' : ''}, but none of ${candidates.join(', ')} received it within ${timeoutMs} ms: the broker's mqtt.exchange is set to another exchange.`,
      });
    } else if (observed === options.configuredExchange) {
      lines.unshift({ check: 'MQTT exchange', status: 'pass', message: `The MQTT plugin publishes to ${observed} (${exchangeType ?? 'unknown type'}), as BridgeScope is configured.` });
    } else {
      lines.unshift({
        check: 'MQTT exchange',
        status: 'fail',
        message: `The MQTT plugin publishes to ${observed}, but BridgeScope is configured for ${options.configuredExchange}: requests will not reach queues bound there. Use --exchange ${observed}.`,
      });
    }
    if (observed && api) {
      lines.push(...wildcardOnDirectLines(observed, exchangeType, await api.bindings(observed)));
    }
    // On a cluster, which node each of the probe's connections was on (while they are still open).
    const nodes = api ? await clusterNodes(api) : undefined;
    if (api && nodes) {
      const [mqttNode, amqpNode] = await Promise.all([
        mqttClientNode(api, clientId),
        amqpQueue === undefined ? undefined : api.queue(amqpQueue).then((queue) => queue?.node, () => undefined),
      ]);
      lines.push(clusterLine(nodes, [clientPlace(`the probe's MQTT client ${clientId}`, mqttNode), ...(amqpNode ? [`its AMQP connection to ${amqpNode}`] : [])]));
    }
    return verdict(observed, exchangeType);
  } finally {
    await link.close();
    await connection.close().catch(() => undefined);
  }
}

/** The MQTT plugin's sessions live in its own default vhost; an AMQP URL on another vhost never sees them. */
export function vhostHint(amqpUrl: string): string {
  const vhost = amqpConnectOptions(amqpUrl, 0).vhost;
  return vhost && vhost !== '/' ? `, or the MQTT plugin uses another vhost than "${vhost}"` : '';
}

async function exchangeTypeOf(exchange: string, api: ManagementApi | undefined): Promise<string | undefined> {
  if (api) return api.exchangeType(exchange).catch(() => undefined);
  if (exchange === 'amq.direct') return 'direct';
  if (exchange === 'amq.topic') return 'topic';
  return undefined;
}

export interface PreflightOptions {
  exchange: string;
  requestTopic: string;
  replyTopic: string | undefined;
  strategy: ReplyStrategy;
  topicMap?: TopicMapOptions;
  /** live consumer counts over AMQP; the management API's own counts lag by its stats interval (~5 s) */
  consumerCount?: (queue: string) => Promise<number>;
  /** the broker's version as the management API reported it; read from its overview when not given */
  brokerVersion?: string;
  /** the request as it will be sent, when known: its QoS, its payload's bytes, the MQTT version the client speaks */
  qos?: 0 | 1 | 2;
  payloadBytes?: number;
  mqttVersion?: 4 | 5;
  /** the MQTT client that will send: on a cluster, the node it is connected to is named */
  mqttClientId?: string;
}

/** The broker version's rules as pre-flight lines, each saying the version and where the rule comes from. */
export function versionCheckLines(rules: BrokerRules, plan: PreflightPlan): CheckLine[] {
  const lines: CheckLine[] = preflightVersionFindings(rules, plan).map((finding) => ({
    check: 'broker version',
    status: finding.severity === 'error' ? 'fail' : finding.severity === 'warning' ? 'warn' : 'pass',
    message: `${finding.message} Source: ${finding.source}.`,
    source: finding.source,
  }));
  if (!rules.version) {
    const [unknown] = describeBrokerRules(rules);
    if (unknown) lines.unshift({ check: 'broker version', status: 'warn', message: `${unknown.rule} Source: ${unknown.source}.`, source: unknown.source });
  }
  return lines;
}

/** "quorum, leader rabbit-2@host" or "classic, on rabbit-3@host": where a queue lives on a cluster. */
export function queuePlace(queue: QueueInfo | undefined): string {
  const type = queue?.type ?? 'classic';
  if (queue?.node === undefined) return type;
  return `${type}, ${type === 'quorum' ? 'leader' : 'on'} ${queue.node}`;
}

/** "2 on rabbit-3@host, 1 on rabbit-1@host", from the consumers the management API lists for `queue`. */
function consumerNodes(consumers: readonly ConsumerInfo[], queue: string): { listed: number; text: string } {
  const byNode = new Map<string, number>();
  for (const consumer of consumers) {
    if (consumer.queue !== queue) continue;
    const node = consumer.node ?? 'an unknown node';
    byNode.set(node, (byNode.get(node) ?? 0) + 1);
  }
  const listed = [...byNode.values()].reduce((sum, n) => sum + n, 0);
  return { listed, text: [...byNode].map(([node, n]) => `${n} on ${node}`).join(', ') };
}

/**
 * The node an MQTT client is connected to: its connection when the management API lists it, else the node of its
 * subscription queue (the MQTT plugin makes it on the client's own node). Undefined when neither is there yet.
 */
export async function mqttClientNode(api: ManagementApi, clientId: string): Promise<string | undefined> {
  const connection = (await api.connections().catch(() => [])).find((c) => c.mqttClientId === clientId && c.node !== undefined);
  if (connection?.node) return connection.node;
  for (const qos of [1, 0] as const) {
    const queue = await api.queue(subscriptionQueueName(clientId, qos)).catch(() => undefined);
    if (queue?.node) return queue.node;
  }
  return undefined;
}

/** The cluster's nodes, or undefined on a single node (where no node needs naming). */
async function clusterNodes(api: ManagementApi): Promise<Array<{ name: string; running: boolean }> | undefined> {
  const nodes = await api.nodes().catch(() => []);
  return nodes.length > 1 ? nodes : undefined;
}

/** Where an MQTT client is, in words: "the MQTT client X is connected to N", or that it is not known yet. */
function clientPlace(label: string, node: string | undefined): string {
  return node
    ? `${label} is connected to ${node}`
    : `the node of ${label} is not known yet (it has no subscription, and the management API has not listed its connection)`;
}

/** One line about the cluster: its nodes, those not running, and where the connections that matter are. */
function clusterLine(nodes: Array<{ name: string; running: boolean }>, where: string[]): CheckLine {
  const down = nodes.filter((node) => !node.running).map((node) => node.name);
  const state = down.length === 0 ? 'all running' : `${down.join(', ')} not running`;
  return { check: 'cluster', status: down.length === 0 ? 'pass' : 'warn', message: `A cluster of ${nodes.length} nodes, ${[state, ...where].join('; ')}.` };
}

/** Before sending: is the request routed and consumed, will the reply be routed, does the reply topic survive, what does this broker version do with it? */
export async function preflight(api: ManagementApi, options: PreflightOptions): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  const requestIssues = lintTopic(options.requestTopic, 'publish', options.topicMap);
  for (const issue of requestIssues.filter((i) => i.severity !== 'info')) {
    lines.push({ check: 'request topic', status: issue.severity === 'error' ? 'fail' : 'warn', message: issue.message });
  }
  const [exchangeType, bindings, queues, nodes, version] = await Promise.all([
    api.exchangeType(options.exchange),
    api.bindings(options.exchange),
    api.queues(),
    clusterNodes(api),
    options.brokerVersion !== undefined ? options.brokerVersion : api.overview().then((overview) => overview.rabbitmqVersion, () => undefined),
  ]);
  const consumers = nodes ? await api.consumers().catch(() => []) : [];
  const requestKey = topicToRoutingKey(options.requestTopic, options.topicMap);
  const bound = bindings.filter((binding) => binding.destinationType === 'queue' && bindingRoutes(exchangeType, binding.bindingKey, requestKey));
  // A watcher's tap is bound for the key too, and consumed: it serves nobody.
  const serverQueues = bound.filter((binding) => binding.mqttClientId === undefined && !isWatchTapQueue(binding.destination));
  if (serverQueues.length === 0) {
    lines.push({
      check: 'request routed',
      status: 'fail',
      message: `No queue is bound to ${options.exchange} for routing key "${requestKey}": the broker will drop the request, and an MQTT 3.1.1 device still gets its PUBACK.`,
    });
  } else {
    lines.push({
      check: 'request routed',
      status: 'pass',
      message: `"${requestKey}" on ${options.exchange} reaches ${serverQueues.map((b) => b.destination).join(', ')}.`,
    });
    const byName = new Map<string, QueueInfo>(queues.map((queue) => [queue.name, queue]));
    for (const binding of serverQueues) {
      const queue = byName.get(binding.destination);
      const count = options.consumerCount
        ? await options.consumerCount(binding.destination).catch(() => queue?.consumers ?? 0)
        : (queue?.consumers ?? 0);
      // On a cluster: the queue's type and node (a quorum queue's leader), and the nodes its consumers are on.
      const name = nodes ? `${binding.destination} (${queuePlace(queue)})` : binding.destination;
      let where = '';
      if (nodes && count > 0) {
        const listed = consumerNodes(consumers, binding.destination);
        const unlisted = count - listed.listed;
        where = `: ${[listed.text, unlisted > 0 ? `${unlisted} not listed by the management API yet (it lists consumers every few seconds)` : ''].filter(Boolean).join('; ')}`;
      }
      const leaderDown = nodes !== undefined && queue?.node !== undefined && nodes.some((node) => node.name === queue.node && !node.running);
      lines.push(
        count === 0
          ? { check: 'request consumed', status: 'warn', message: `Nobody consumes ${name}: requests wait there until a server starts.` }
          : leaderDown
            ? { check: 'request consumed', status: 'warn', message: `${name} has ${count} consumer(s)${where}, but its node ${queue?.node} is not running.` }
            : { check: 'request consumed', status: 'pass', message: `${name} has ${count} consumer(s)${where}.` },
      );
    }
  }

  if (options.replyTopic === undefined) {
    lines.push({ check: 'reply subscription', status: 'pass', message: 'A fresh reply topic is subscribed just before sending (per-request).' });
  } else {
    const replyIssues = lintTopic(options.replyTopic, 'reply', options.topicMap).filter((i) => i.severity !== 'info');
    for (const issue of replyIssues) {
      lines.push({ check: 'reply topic', status: issue.severity === 'error' ? 'fail' : 'warn', message: issue.message });
    }
    if (replyIssues.length === 0) lines.push({ check: 'reply topic', status: 'pass', message: `"${options.replyTopic}" survives the mapping unchanged.` });
    const replyKey = topicToRoutingKey(options.replyTopic, options.topicMap);
    const replyBinding = bindings.find((binding) => binding.mqttClientId !== undefined && bindingRoutes(exchangeType, binding.bindingKey, replyKey));
    if (replyBinding) {
      const replyQueue = nodes ? queues.find((queue) => queue.name === replyBinding.destination) : undefined;
      const on = replyQueue?.node ? `, on ${replyQueue.node}` : '';
      lines.push({ check: 'reply subscription', status: 'pass', message: `"${replyKey}" reaches ${replyBinding.destination} (client ${replyBinding.mqttClientId}${on}).` });
    } else if (options.strategy === 'per-request') {
      // Said of the broker now and of a call: a device of someone else's is not subscribed by BridgeScope's call.
      lines.push({ check: 'reply subscription', status: 'pass', message: `Nothing is subscribed to "${options.replyTopic}" now: a call (per-request) subscribes just before sending; a device must do the same, or its reply is dropped.` });
    } else {
      lines.push({
        check: 'reply subscription',
        status: 'fail',
        message: `No MQTT subscription is bound for reply key "${replyKey}" yet: the server's reply would be returned as unroutable.`,
      });
    }
  }

  lines.push(
    ...versionCheckLines(brokerRules(version), {
      ...(options.mqttVersion !== undefined ? { protocol: options.mqttVersion } : {}),
      ...(options.qos !== undefined ? { qos: options.qos } : {}),
      ...(options.payloadBytes !== undefined ? { bytes: options.payloadBytes } : {}),
      ...(options.replyTopic !== undefined ? { replyTopic: options.replyTopic } : {}),
    }),
  );
  if (nodes) {
    const id = options.mqttClientId;
    lines.push(clusterLine(nodes, id === undefined ? [] : [clientPlace(`the MQTT client ${id}`, await mqttClientNode(api, id))]));
  }
  return lines;
}
