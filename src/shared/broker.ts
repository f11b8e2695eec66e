/** What the inspector shows about the broker: overview, bindings, queues, connections, checks. */

export interface BrokerOverview {
  rabbitmqVersion: string;
  erlangVersion: string;
  clusterName: string;
  /** listener protocols: amqp, mqtt, http, ... */
  protocols: string[];
  /** the node that answered (a cluster has several) */
  node?: string;
}

export interface BindingInfo {
  exchange: string;
  destination: string;
  destinationType: 'queue' | 'exchange';
  bindingKey: string;
  /** set when the destination is an MQTT subscription queue `mqtt-subscription-<clientId>qos<0|1>` */
  mqttClientId?: string;
  mqttQos?: 0 | 1;
}

export interface QueueInfo {
  name: string;
  consumers: number;
  messages: number;
  messagesReady: number;
  messagesUnacked: number;
  durable: boolean;
  mqttClientId?: string;
  mqttQos?: 0 | 1;
  /** classic, quorum, stream, or rabbit_mqtt_qos0_queue (3.12+) */
  type?: string;
  /** the node holding the queue (a quorum queue's leader) */
  node?: string;
}

export interface ConnectionInfo {
  name: string;
  protocol: string;
  /** the cluster node the connection is on */
  node?: string;
  mqttClientId?: string;
  connectionName?: string;
}

/** One consumer of a queue, with the node its connection is on (management API; listed at its stats interval, ~5 s). */
export interface ConsumerInfo {
  queue: string;
  node?: string;
  connectionName?: string;
}

export type CheckStatus = 'pass' | 'warn' | 'fail';

/** One line of a pre-flight or probe verdict a user can act on. */
export interface CheckLine {
  check: string;
  status: CheckStatus;
  message: string;
  /** where the rule behind the line comes from, when it is one of the broker version's rules (also said in the message) */
  source?: string;
  /** 'auth' on a failed line whose cause is refused credentials (the CLI then exits 4, as for any refused login) */
  cause?: 'auth';
}

export interface ProbeVerdict {
  /** the exchange the MQTT plugin really published the probe to, or undefined when none of the candidates got it */
  observedExchange: string | undefined;
  configuredExchange: string;
  exchangeType: string | undefined;
  lines: CheckLine[];
}
