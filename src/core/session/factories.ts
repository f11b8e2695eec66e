/** The collaborators a session is built from, as factories: the real ones talk to RabbitMQ; tests pass fakes. */
import { sandboxStatus, startSandbox, stopSandbox } from '../broker/sandbox';
import { ManagementApi } from '../broker/management-api';
import { AmqpLink } from '../links/amqp-link';
import { RpcClient } from '../rpc/client';
import { RpcServer } from '../rpc/server';
import { loadHandler, parseHandlerSpec } from '../rpc/handlers';
import { checkAbandonedTracing, FirehoseTracer } from '../trace/firehose';
import type { TraceStore } from '../trace/trace-store';
import type { SandboxNode } from './sandbox';
import type { Connection, ConnectionFactories } from './connection';
import type { ServerControllerOptions } from './server';

export interface SessionFactories extends ConnectionFactories {
  sandboxNode: SandboxNode;
  createServer: ServerControllerOptions['createServer'];
  createTracer: (connection: Connection, store: TraceStore, owner: string) => FirehoseTracer;
}

/** The real collaborators: RabbitMQ through amqplib, mqtt.js and the management API. */
export const realFactories: SessionFactories = {
  sandboxNode: { status: sandboxStatus, start: startSandbox, stop: stopSandbox },
  createApi: (profile) => new ManagementApi(profile.managementUrl, profile.vhost),
  createClient: (profile) => new RpcClient({ mqttUrl: profile.mqttUrl, strategy: 'shared' }),
  createInspector: (profile, onConnected) =>
    new AmqpLink({
      url: profile.amqpUrl,
      connectionName: 'bridgescope-inspector',
      onConnected: async (model) => onConnected(model),
    }),
  checkAbandonedTracing,
  createServer: async ({ handlerSpec, ...options }) => new RpcServer({ ...options, handler: await loadHandler(parseHandlerSpec(handlerSpec)) }),
  createTracer: (connection, store, owner) => new FirehoseTracer({ amqpUrl: connection.profile.amqpUrl, api: connection.api, store, owner }),
};
