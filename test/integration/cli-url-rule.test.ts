/**
 * The command line never answers from two brokers: once a flag names a broker other than the running sandbox, the
 * URLs not given follow that broker (or are asked for), not the sandbox. Here the test broker plays the running
 * sandbox (its URLs in a sandbox folder), and a TCP relay in front of its ports plays "another broker".
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../support/cli';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let sandboxDir = '';
let relay: Server;
const sockets = new Set<Socket>();
let queue = '';

/** A plain TCP relay to `port`: the same broker behind another port, which the command line must take for another one. */
function relayTo(port: number): Promise<Server> {
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const env = (): NodeJS.ProcessEnv => ({ BRIDGESCOPE_SANDBOX_DIR: sandboxDir, BRIDGESCOPE_AMQP_URL: '', BRIDGESCOPE_MQTT_URL: '', BRIDGESCOPE_MANAGEMENT_URL: '' });

beforeAll(async () => {
  sandboxDir = mkdtempSync(join(tmpdir(), 'bridgescope-url-rule-'));
  writeFileSync(join(sandboxDir, 'sandbox.json'), JSON.stringify({ urls: broker.urls }));
  relay = await relayTo(Number(new URL(broker.urls.amqp).port));
  // A binding only the "sandbox" (the test broker) has: a command that asked it would list it.
  queue = uniqueName('url_rule');
  const connection = await amqp.connect(broker.urls.amqp);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { autoDelete: false, durable: false });
  await channel.bindQueue(queue, 'amq.direct', queue);
  await connection.close();
});

afterAll(async () => {
  const connection = await amqp.connect(broker.urls.amqp);
  const channel = await connection.createChannel();
  await channel.deleteQueue(queue);
  await connection.close();
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => relay.close(() => resolve()));
  rmSync(sandboxDir, { recursive: true, force: true });
});

describe('broker URLs on the command line, with a sandbox running', () => {
  it('bindings with no flag asks the sandbox', async () => {
    const result = await runCli(['bindings'], { env: env() });
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(queue);
  });

  it("bindings --amqp <another broker> never lists the sandbox's bindings: the management URL follows --amqp, said on stderr", async () => {
    const other = `amqp://guest:s3cret-pw@127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const result = await runCli(['bindings', '--amqp', other], { env: env() });
    expect(result.stderr).toContain("bridgescope: no management URL given: using http://guest:***@127.0.0.1:15672 (the host of --amqp with the plugin's default port)");
    expect(result.stdout).not.toContain(queue);
    expect(`${result.stdout}${result.stderr}`).not.toContain('s3cret-pw');
  });

  it('call --mqtt <another broker> gives its verdict without asking the sandbox why', async () => {
    const mqttRelay = await relayTo(Number(new URL(broker.urls.mqtt).port));
    try {
      const port = (mqttRelay.address() as AddressInfo).port;
      const result = await runCli(['call', '--mqtt', `mqtt://127.0.0.1:${port}`, '--topic', uniqueName('nobody'), '--timeout', '1500', '{"n":1}'], { env: env() });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('the broker could not be asked why; give management and AMQP URLs');
    } finally {
      await new Promise<void>((resolve) => mqttRelay.close(() => resolve()));
    }
  });
});
