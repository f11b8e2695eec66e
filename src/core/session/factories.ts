/** The collaborators a session is built from, as factories: the real ones talk to RabbitMQ; tests pass fakes. */
import { sandboxStatus, startSandbox, stopSandbox } from '../broker/sandbox';
import { ManagementApi } from '../broker/management-api';
import { AmqpLink } from '../links/amqp-link';
import { RpcClient } from '../rpc/client';
import { RpcServer } from '../rpc/server';
import { loadHandler, parseHandlerSpec } from '../rpc/handlers';
import { checkAbandonedTracing, FirehoseTracer, type FirehoseEvent } from '../trace/firehose';
import type { TraceStep } from '../../shared/trace';
import type { TraceStore } from '../trace/trace-store';
import type { SandboxNode } from './sandbox';
import type { Connection, ConnectionFactories } from './connection';
import type { ServerControllerOptions } from './server';
import type { WatchControllerOptions } from './watch';
import { DEFAULT_CLIENT_REPLY_STRATEGY } from '../../shared/defaults';
import type { ConnectionProfile } from '../../shared/contract';
import { splitUrls } from '../../shared/url-list';
import { brokerTargets, type TlsFiles } from '../connection-details';

export interface SessionFactories extends ConnectionFactories {
  sandboxNode: SandboxNode;
  createServer: ServerControllerOptions['createServer'];
  createTracer: (connection: Connection, store: TraceStore, owner: string, onEvent?: (event: FirehoseEvent, step: TraceStep | undefined) => void) => FirehoseTracer;
  /** the Watch panel's watcher (unset: the real one, `src/core/watch/watcher.ts`) */
  createWatcher?: WatchControllerOptions['createWatcher'];
}

/** The RPC client of a profile: every MQTT URL (failover), its client id, version, keepalive, clean session and TLS. */
function clientOf(profile: ConnectionProfile, tls?: TlsFiles): RpcClient {
  const [mqttUrl = '', ...fallbackMqttUrls] = brokerTargets(profile).mqtt;
  const client = new RpcClient({
    mqttUrl,
    fallbackMqttUrls,
    strategy: DEFAULT_CLIENT_REPLY_STRATEGY,
    ...(profile.mqttClientId ? { clientId: profile.mqttClientId } : {}),
    protocolVersion: profile.mqttVersion ?? 4,
    ...(profile.keepaliveSeconds !== undefined ? { keepaliveSeconds: profile.keepaliveSeconds } : {}),
  });
  client.link.useDetails({ ...(tls ? { tls } : {}), ...(profile.cleanSession === false ? { clean: false } : {}) });
  return client;
}

/** The real collaborators: RabbitMQ through amqplib, mqtt.js and the management API. */
export const realFactories: SessionFactories = {
  sandboxNode: { status: sandboxStatus, start: startSandbox, stop: stopSandbox },
  // The management API is asked at one node (the cluster's answer is the same at every node), with the profile's TLS files.
  createApi: (profile, tls) => {
    // every management URL of the list: the next is asked when the one in use cannot be reached
    const [first = profile.managementUrl, ...others] = brokerTargets(profile).management;
    return new ManagementApi(first, profile.vhost, undefined, tls, others);
  },
  createClient: clientOf,
  createInspector: (profile, onConnected, tls) => {
    const [url = '', ...fallbackUrls] = brokerTargets(profile).amqp;
    return new AmqpLink({
      url,
      fallbackUrls,
      ...(tls ? { tls } : {}),
      connectionName: 'bridgescope-inspector',
      onConnected: async (model) => onConnected(model),
    });
  },
  checkAbandonedTracing,
  // `amqpUrl` is the profile's list (credential fields applied): the first node, then the failover ones; `tls` its TLS files.
  createServer: async ({ handlerSpec, amqpUrl, ...options }) => {
    const [first = amqpUrl, ...fallbackAmqpUrls] = splitUrls(amqpUrl);
    return new RpcServer({ ...options, amqpUrl: first, fallbackAmqpUrls, handler: await loadHandler(parseHandlerSpec(handlerSpec)) });
  },
  // The tracer follows the node the inspector reached (the first URL that answered), with the profile's TLS files.
  createTracer: (connection, store, owner, onEvent) => {
    const { tls } = connection;
    return new FirehoseTracer({ amqpUrl: connection.inspector.currentUrl, ...(tls ? { tls } : {}), api: connection.api, store, owner, ...(onEvent ? { onEvent } : {}) });
  },
};
