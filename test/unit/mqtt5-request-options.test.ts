import { afterEach, describe, expect, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';
import { callOptionsFromSendRequest } from '../../src/core/rpc/call-options';
import type { SendRequestArgs } from '../../src/shared/contract';
import { startFakeMqtt5Peer, type FakeMqtt5PeerOptions } from '../support/fake-mqtt5-peer';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function connected(peerOptions: FakeMqtt5PeerOptions = {}, brokerVersion?: string) {
  const peer = await startFakeMqtt5Peer(peerOptions);
  cleanups.push(() => peer.close());
  const client = new RpcClient({ mqttUrl: peer.url, protocolVersion: peerOptions.protocolVersion ?? 5, strategy: 'per-request', ...(brokerVersion ? { brokerVersion } : {}) });
  await client.connect();
  cleanups.push(() => client.close());
  return { peer, client };
}

const form = (extra: Partial<SendRequestArgs>): SendRequestArgs => ({ topic: 'rpc_queue', qos: 1, strategy: 'per-request', payloadText: '', timeoutMs: 3000, ...extra });

describe('MQTT 5 request options from Compose reach the wire', () => {
  it('sends user properties (a repeated name kept, in order), correlation data, response topic and message expiry', async () => {
    const { peer, client } = await connected();
    const outcome = await client.call(
      callOptionsFromSendRequest(
        form({
          payloadText: '{"params": 1}',
          replyTopic: 'reply/mine',
          mqtt5: {
            userProperties: [
              { key: 'tenant', value: 'a' },
              { key: 'trace', value: 'x' },
              { key: 'tenant', value: 'b' },
            ],
            correlationData: 'corr-7',
            responseTopic: 'reply/mine',
            messageExpirySeconds: 30,
          },
        }),
      ),
    );
    const [request] = peer.published;
    expect(request?.properties?.userProperties).toEqual({ tenant: ['a', 'b'], trace: 'x' });
    expect(request?.properties?.correlationData?.toString()).toBe('corr-7');
    expect(request?.properties?.responseTopic).toBe('reply/mine');
    expect(request?.properties?.messageExpiryInterval).toBe(30);
    // the JSON envelope still carries id and reply_to: servers without MQTT 5 answer as before
    expect(JSON.parse(request?.payload.toString() ?? '{}')).toMatchObject({ id: outcome.id, reply_to: 'reply/mine', params: 1 });
    expect(outcome.result).toBe('ok');
    expect(outcome.mqttVersion).toBe(5);
  });

  it('defaults the response topic to the reply topic and the correlation data to the RPC id', async () => {
    const { peer, client } = await connected();
    const outcome = await client.call(callOptionsFromSendRequest(form({ payloadText: '{}', mqtt5: { userProperties: [{ key: 'k', value: 'v' }] } })));
    expect(peer.published[0]?.properties?.responseTopic).toBe(outcome.replyTopic);
    expect(peer.published[0]?.properties?.correlationData?.toString()).toBe(outcome.id);
  });

  it("captures the reply's properties: user properties, correlation data, content type", async () => {
    const { client } = await connected({ replyProperties: { userProperties: { worker: 'w1', hop: ['a', 'b'] }, contentType: 'application/json' } });
    const outcome = await client.call(callOptionsFromSendRequest(form({ payloadText: '{}' })));
    expect(outcome.replyProperties).toEqual({
      userProperties: [
        { key: 'worker', value: 'w1' },
        { key: 'hop', value: 'a' },
        { key: 'hop', value: 'b' },
      ],
      correlationData: outcome.id,
      correlationDataEncoding: 'utf8',
      contentType: 'application/json',
    });
  });

  it('over MQTT 3.1.1 sends none of them and says so in the outcome, naming the broker version', async () => {
    const { peer, client } = await connected({ protocolVersion: 4 }, '3.10.8');
    const outcome = await client.call(callOptionsFromSendRequest(form({ payloadText: '{}', mqtt5: { messageExpirySeconds: 5 } })));
    expect(peer.published[0]?.properties).toBeUndefined();
    expect(outcome.mqttVersion).toBe(4);
    expect(outcome.replyProperties).toBeUndefined();
    expect(outcome.warnings).toContain(
      'The MQTT 5 options (user properties, correlation data, response topic, message expiry) were not sent: RabbitMQ 3.10.8 has no MQTT 5 (it came in 3.13), so the connection speaks MQTT 3.1.1.',
    );
  });
});

describe('bodies in other formats are sent exactly as given', () => {
  it.each([
    ['text', 'not json {', Buffer.from('not json {')],
    ['hex', '00 ff 7b:0a', Buffer.from([0x00, 0xff, 0x7b, 0x0a])],
    ['base64', 'AP97Cg==', Buffer.from([0x00, 0xff, 0x7b, 0x0a])],
    ['file', 'AP97Cg', Buffer.from([0x00, 0xff, 0x7b, 0x0a])],
  ] as const)('%s: the bytes on the wire, no id, no reply_to; the reply is still awaited on the reply topic', async (format, text, bytes) => {
    const { peer, client } = await connected();
    const outcome = await client.call(callOptionsFromSendRequest(form({ payloadFormat: format, payloadText: text })));
    expect(Buffer.compare(peer.published[0]?.payload as Buffer, bytes)).toBe(0);
    // The peer answers a non-JSON request with `done` on the Response Topic: matched without an id in the body.
    expect(outcome.body).toEqual({ kind: 'text', text: 'done' });
    expect(outcome.bodyBytes).toBe(4);
    expect(outcome.arrivedOn).toBe(outcome.replyTopic);
  });

  it('says a method cannot travel in a non-JSON body', async () => {
    const { client } = await connected();
    const outcome = await client.call(callOptionsFromSendRequest(form({ payloadFormat: 'text', payloadText: 'hi', method: 'ping' })));
    expect(outcome.warnings).toContain('The method "ping" is not sent: a non-JSON body is sent exactly as given.');
  });
});
