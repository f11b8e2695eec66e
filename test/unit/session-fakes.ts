/** Fake collaborators for the session's controllers: links, client, server, tracer and sandbox node that record what was asked of them. */
import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import type { ConnectionProfile } from '../../src/shared/contract';
import type { LinkStatus, RpcOutcome } from '../../src/shared/rpc';
import type { TraceStepDraft } from '../../src/shared/trace';
import type { SandboxInfo, SandboxStartResult, SandboxStatus, SandboxStopResult } from '../../src/core/broker/sandbox';
import type { SandboxNode } from '../../src/core/session/sandbox';
import type { ConnectionFactories } from '../../src/core/session/connection';
import type { SessionFactories } from '../../src/core/session/factories';
import type { FirehoseStatus, FirehoseTracer, TracingRelease } from '../../src/core/trace/firehose';
import type { AmqpLink } from '../../src/core/links/amqp-link';
import type { ManagementApi } from '../../src/core/broker/management-api';
import type { RpcClient, RpcCallOptions } from '../../src/core/rpc/client';
import type { RpcServer } from '../../src/core/rpc/server';

export const profile: ConnectionProfile = {
  name: 'fake',
  amqpUrl: 'amqp://guest:guest@127.0.0.1:1/',
  mqttUrl: 'mqtt://guest:guest@127.0.0.1:2',
  managementUrl: 'http://guest:guest@127.0.0.1:3',
  vhost: '/',
  exchange: 'amq.direct',
};

/** Everything the fakes did, in order, across all of them. */
export class Journal {
  readonly entries: string[] = [];
  note(entry: string): void {
    this.entries.push(entry);
  }
}

export class FakeStatusSource extends EventEmitter {
  status: LinkStatus = { state: 'idle' };
  setStatus(status: LinkStatus): void {
    this.status = status;
    this.emit('status', status);
  }
  get connected(): boolean {
    return this.status.state === 'connected';
  }
}

export class FakeClient extends EventEmitter {
  readonly link = new FakeStatusSource();
  readonly clientId = 'fake-client';
  readonly sharedTopic = 'reply/shared';
  failConnect: Error | undefined;
  /** what the next call does: resolve with an outcome, or throw (after emitting the steps given) */
  answer: (options: RpcCallOptions) => Promise<RpcOutcome> = async (options) => outcomeFor(options.id ?? 'x');
  readonly calls: RpcCallOptions[] = [];

  constructor(private readonly journal = new Journal()) {
    super();
  }
  async connect(): Promise<void> {
    this.journal.note('client.connect');
    if (this.failConnect) throw this.failConnect;
    this.link.setStatus({ state: 'connected', since: 1 });
  }
  async close(): Promise<void> {
    this.journal.note('client.close');
    this.link.setStatus({ state: 'closed' });
  }
  step(draft: TraceStepDraft): void {
    this.emit('step', draft);
  }
  call(options: RpcCallOptions): Promise<RpcOutcome> {
    this.calls.push(options);
    return this.answer(options);
  }
}

export class FakeInspector extends FakeStatusSource {
  constructor(private readonly journal = new Journal()) {
    super();
  }
  async open(): Promise<void> {
    this.journal.note('inspector.open');
    this.setStatus({ state: 'connected', since: 1 });
  }
  async close(): Promise<void> {
    this.journal.note('inspector.close');
    this.setStatus({ state: 'closed' });
  }
}

export function outcomeFor(id: string): RpcOutcome {
  return {
    id,
    replyTopic: 'reply/shared',
    arrivedOn: 'reply/shared',
    topicMismatch: false,
    body: { kind: 'json', value: { id, result: 1 } },
    result: 1,
    durationMs: 2,
    publishQos: { asked: 1, acknowledgedAs: 1 },
    subscriptionQos: { asked: 1, granted: 1 },
    warnings: [],
  };
}

export interface FakeConnectionParts {
  factories: ConnectionFactories;
  client: FakeClient;
  inspector: FakeInspector;
  abandoned: { restore: () => Promise<TracingRelease> } | undefined;
}

/** Connection factories handing out one fake client and inspector (new ones after `renew()`). */
export function fakeConnectionFactories(journal = new Journal()): FakeConnectionParts & { renew(): void } {
  const parts: FakeConnectionParts & { renew(): void } = {
    client: new FakeClient(journal),
    inspector: new FakeInspector(journal),
    abandoned: undefined,
    renew() {
      parts.client = new FakeClient(journal);
      parts.inspector = new FakeInspector(journal);
    },
    factories: {
      createClient: () => parts.client as unknown as RpcClient,
      createInspector: (_profile, onConnected) => {
        onConnected({} as ChannelModel);
        return parts.inspector as unknown as AmqpLink;
      },
      createApi: () => ({ vhost: '/', overview: async () => ({ rabbitmqVersion: '3.10.8', erlangVersion: '25', clusterName: 'fake', protocols: ['amqp', 'mqtt'] }) }) as unknown as ManagementApi,
      checkAbandonedTracing: async () =>
        parts.abandoned ? { message: 'Tracing was left on by a dead BridgeScope.', since: 'then', restore: () => (parts.abandoned as { restore: () => Promise<TracingRelease> }).restore() } : undefined,
    },
  };
  return parts;
}

export class FakeServer extends EventEmitter {
  status: LinkStatus = { state: 'idle' };
  readonly stats = { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} as Record<string, number> };
  failStart: Error | undefined;
  constructor(
    readonly name: string,
    private readonly journal = new Journal(),
  ) {
    super();
  }
  async start(): Promise<void> {
    this.journal.note(`${this.name}.start`);
    if (this.failStart) throw this.failStart;
    this.status = { state: 'connected', since: 1 };
  }
  async stop(): Promise<void> {
    this.journal.note(`${this.name}.stop`);
  }
  setStatus(status: LinkStatus): void {
    this.status = status;
    this.emit('status', status);
  }
  asServer(): RpcServer {
    return this as unknown as RpcServer;
  }
}

export class FakeTracer extends EventEmitter {
  status: FirehoseStatus = { state: 'off' };
  startsWith: FirehoseStatus | Error = { state: 'on', since: 5, turnedOnByUs: true };
  release: TracingRelease = { outcome: 'switched-off' };
  constructor(private readonly journal = new Journal()) {
    super();
  }
  async start(): Promise<FirehoseStatus> {
    this.journal.note('tracer.start');
    if (this.startsWith instanceof Error) throw this.startsWith;
    this.status = this.startsWith;
    return this.status;
  }
  async stop(): Promise<TracingRelease> {
    this.journal.note('tracer.stop');
    this.status = { state: 'off' };
    return this.release;
  }
  setStatus(status: FirehoseStatus): void {
    this.status = status;
    this.emit('status', status);
  }
  /** A fake tracer lists no connections. */
  connectionNameOf(): string | undefined {
    return undefined;
  }

  asTracer(): FirehoseTracer {
    return this as unknown as FirehoseTracer;
  }
}

export const runningInfo = (pid: number): SandboxInfo => ({
  pid,
  nodeName: 'fake@localhost',
  dir: '/tmp/fake',
  ports: { amqp: 1, mqtt: 2, management: 3, dist: 4 },
  urls: { amqp: 'amqp://guest:guest@127.0.0.1:1', mqtt: 'mqtt://guest:guest@127.0.0.1:2', management: 'http://guest:guest@127.0.0.1:3' },
  mqttExchange: 'amq.direct',
  startedAt: 'now',
  logFile: '/tmp/fake/log',
});

/** A sandbox node whose answers the test sets; every call is journalled. */
export class FakeNode implements SandboxNode {
  statusAnswers: SandboxStatus[] = [];
  statusCalls = 0;
  startReused = false;
  failStart: Error | undefined;
  pid = 100;
  constructor(private readonly journal = new Journal()) {}
  async status(dir: string): Promise<SandboxStatus> {
    this.statusCalls += 1;
    return this.statusAnswers.shift() ?? { state: 'stopped', dir };
  }
  async start(): Promise<SandboxStartResult> {
    this.journal.note('node.start');
    if (this.failStart) throw this.failStart;
    return { info: runningInfo(this.pid), reused: this.startReused, warnings: ['port 5672 was taken'] };
  }
  async stop(): Promise<SandboxStopResult> {
    this.journal.note('node.stop');
    return { stopped: true, info: runningInfo(this.pid) };
  }
}

/** Session factories made of fakes only: nothing touches a broker. */
export function fakeSessionFactories(journal = new Journal()) {
  const connection = fakeConnectionFactories(journal);
  const node = new FakeNode(journal);
  const servers: FakeServer[] = [];
  const tracers: FakeTracer[] = [];
  const factories: SessionFactories = {
    ...connection.factories,
    sandboxNode: node,
    createServer: async () => {
      const server = new FakeServer(`server${servers.length + 1}`, journal);
      servers.push(server);
      return server.asServer();
    },
    createTracer: () => {
      const tracer = new FakeTracer(journal);
      tracers.push(tracer);
      return tracer.asTracer();
    },
  };
  return { factories, connection, node, servers, tracers, journal };
}
