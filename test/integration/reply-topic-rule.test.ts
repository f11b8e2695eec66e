import { afterAll, describe, expect, inject, it } from 'vitest';
import { RpcServer } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { callOptionsFromSendRequest } from '../../src/core/rpc/call-options';
import { uniqueName } from '../support/names';
import { runCli } from '../support/cli';

const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const close of closers.splice(0)) await close();
});

async function echoServer(): Promise<RpcServer> {
  const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
  await server.start();
  closers.push(() => server.stop());
  return server;
}

describe('the reply-topic rule, end to end', () => {
  it("bridgescope call gets its reply on the payload's reply_to when no --reply-topic is given", async () => {
    const server = await echoServer();
    const replyTopic = `reply/${uniqueName('payload')}`;
    const call = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', server.queue, '--json', JSON.stringify({ reply_to: replyTopic, params: 1 })]);
    expect(call.code).toBe(0);
    expect(JSON.parse(call.stdout)).toMatchObject({ ok: true, replyTopic, arrivedOn: replyTopic, result: 1, warnings: [] });
  });

  it('bridgescope call lets --reply-topic win over the payload and says so', async () => {
    const server = await echoServer();
    const explicit = `reply/${uniqueName('explicit')}`;
    const call = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', server.queue, '--reply-topic', explicit, '--json', JSON.stringify({ reply_to: 'reply/ignored' })]);
    expect(call.code).toBe(0);
    const printed = JSON.parse(call.stdout) as { replyTopic: string; arrivedOn: string; warnings: string[] };
    expect(printed).toMatchObject({ replyTopic: explicit, arrivedOn: explicit });
    expect(printed.warnings).toEqual([expect.stringContaining('"reply/ignored"')]);
  });

  it("the app's request honours the payload's reply_to too, and its outcome carries the warning when the form overrides it", async () => {
    const server = await echoServer();
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy: 'shared' });
    await client.connect();
    closers.push(() => client.close());
    const fromPayload = `reply/${uniqueName('app-payload')}`;
    const request = { topic: server.queue, qos: 1 as const, strategy: 'shared' as const, timeoutMs: 10_000 };
    const honoured = await client.call(callOptionsFromSendRequest({ ...request, payloadText: JSON.stringify({ reply_to: fromPayload }) }));
    expect(honoured).toMatchObject({ replyTopic: fromPayload, arrivedOn: fromPayload, warnings: [] });

    const fromForm = `reply/${uniqueName('app-form')}`;
    const overridden = await client.call(callOptionsFromSendRequest({ ...request, replyTopic: fromForm, payloadText: JSON.stringify({ reply_to: fromPayload }) }));
    expect(overridden).toMatchObject({ replyTopic: fromForm, arrivedOn: fromForm });
    expect(overridden.warnings).toEqual([expect.stringContaining(`"${fromPayload}"`)]);
  });
});
