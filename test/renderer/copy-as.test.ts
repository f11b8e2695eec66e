import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { SendRequestArgs } from '../../src/shared/contract';
import { asBridgescopeCall, asMosquittoPub, requestBody, shellQuote } from '../../src/renderer/src/copy-as';

/** The words a real POSIX shell makes of a command line (the first word dropped), one per NUL. */
function wordsOf(commandLine: string): string[] {
  const out = execFileSync('sh', ['-c', `set -- ${commandLine.replace(/^\S+/, '')}\nprintf '%s\\0' "$@"`], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

const request: SendRequestArgs = { topic: 'rpc_queue', qos: 1, strategy: 'per-request', payloadText: '{\n  "params": {"hello": "device"}\n}', timeoutMs: 10_000 };
const profile = { mqttUrl: 'mqtt://127.0.0.1:1884', exchange: 'amq.direct' };

describe('shell quoting', () => {
  it.each([
    ["it's", 'single quote'],
    ['a b  c', 'spaces'],
    ['$HOME `id` $(id) \\ " ! * ? [a] ; & | < > ~', 'expansions and operators'],
    ['rpc/#', 'an MQTT wildcard'],
    ['', 'the empty string'],
    ['line one\nline two', 'a newline'],
    ['{"a":"b\'c"}', 'JSON with a quote'],
  ])('a shell reads back exactly %j (%s)', (word) => {
    expect(wordsOf(`x ${shellQuote(word)}`)).toEqual([word]);
  });

  it('leaves plain words bare', () => {
    expect(shellQuote('rpc_queue')).toBe('rpc_queue');
    expect(shellQuote('mqtt://127.0.0.1:1884')).toBe('mqtt://127.0.0.1:1884');
  });
});

describe('Copy as bridgescope call', () => {
  it('gives only the flags that differ from the CLI defaults, and the payload on one line', () => {
    expect(asBridgescopeCall(request, profile)).toBe(`bridgescope call --mqtt mqtt://127.0.0.1:1884 '{"params":{"hello":"device"}}'`);
  });

  it('carries every field of the form, and a shell reads it back as the same arguments', () => {
    const line = asBridgescopeCall(
      { topic: "dev/it's/rpc", qos: 2, strategy: 'shared', replyTopic: 'reply/v1.2/x', method: 'set temp', payloadText: `{"note": "it's $5"}`, timeoutMs: 2500 },
      { mqttUrl: 'mqtt://a:1883,mqtt://b:1883', exchange: 'amq.topic' },
    );
    expect(wordsOf(line)).toEqual([
      'call', '--mqtt', 'mqtt://a:1883,mqtt://b:1883', '--topic', "dev/it's/rpc", '--qos', '2', '--reply', 'shared', '--reply-topic', 'reply/v1.2/x',
      '--method', 'set temp', '--timeout', '2500', '--exchange', 'amq.topic', `{"note":"it's $5"}`,
    ]);
  });

  it('leaves out an empty payload', () => {
    expect(asBridgescopeCall({ ...request, payloadText: '  ' })).toBe('bridgescope call');
  });
});

describe('Copy as mosquitto_pub', () => {
  it('publishes the body the core would send: the object with id and reply_to added', () => {
    const line = asMosquittoPub({ ...request, method: 'ping' }, profile, 'id-1', 'reply/gen');
    expect(wordsOf(line)).toEqual(['-h', '127.0.0.1', '-p', '1884', '-t', 'rpc_queue', '-q', '1', '-m', '{"params":{"hello":"device"},"id":"id-1","reply_to":"reply/gen","method":"ping"}']);
  });

  it('uses the reply topic of the form, else the payload\'s reply_to, else the generated one', () => {
    expect(JSON.parse(requestBody({ ...request, replyTopic: 'reply/form' }, 'i', 'reply/gen')).reply_to).toBe('reply/form');
    expect(JSON.parse(requestBody({ ...request, payloadText: '{"reply_to": "reply/mine"}' }, 'i', 'reply/gen')).reply_to).toBe('reply/mine');
    expect(JSON.parse(requestBody(request, 'i', 'reply/gen')).reply_to).toBe('reply/gen');
  });

  it('sends a payload that is not an object as params', () => {
    expect(JSON.parse(requestBody({ ...request, payloadText: '[1, 2]' }, 'i', 'r'))).toEqual({ id: 'i', reply_to: 'r', params: [1, 2] });
  });

  it('sends QoS 2 as 1 and says why, since RabbitMQ answers it with a PUBACK mosquitto_pub refuses', () => {
    const line = asMosquittoPub({ ...request, qos: 2 }, profile, 'i', 'r');
    expect(line).toContain(' -q 1 ');
    expect(line).toMatch(/# QoS 2 sent as 1/);
    expect(wordsOf(line)).toContain('-m');
  });

  it('takes host, port and user from the first URL, and reads a password the app only shows as *** from $MQTT_PASSWORD', () => {
    const line = asMosquittoPub(request, { mqttUrl: 'mqtts://dev:***@broker.example:8884,mqtts://other:8884' }, 'i', 'r');
    expect(line).toContain('-P "$MQTT_PASSWORD"');
    expect(line.split(' -t ')[0]).toBe('mosquitto_pub -h broker.example -p 8884 --capath /etc/ssl/certs -u dev -P "$MQTT_PASSWORD"');
  });
});

describe('what a connection speaking MQTT 3.1.1 really sent (issue 26)', () => {
  const withMqtt5: SendRequestArgs = { ...request, mqtt5: { userProperties: [{ key: 'tenant', value: 'acme' }], messageExpirySeconds: 60 } };

  it('leaves the MQTT 5 options out of both commands, and names them in a comment', () => {
    const call = asBridgescopeCall(withMqtt5, profile, false);
    expect(call).not.toContain('--mqtt-version');
    expect(call).not.toContain('--user-property');
    expect(call).toMatch(/ {2}# MQTT 5 options not sent \(this connection speaks MQTT 3\.1\.1\), left out: user property tenant=acme, message expiry 60 s$/);
    const pub = asMosquittoPub(withMqtt5, profile, 'id-1', 'reply/x', false);
    expect(pub).not.toContain('mqttv5');
    expect(pub).not.toContain('-D');
    expect(pub).toContain('# MQTT 5 options not sent');
    // The comment is one: a shell reads the same words as without it.
    expect(wordsOf(call)).toEqual(wordsOf(asBridgescopeCall(request, profile)));
  });

  it('keeps them when they were sent', () => {
    expect(asBridgescopeCall(withMqtt5, profile, true)).toContain('--mqtt-version 5 --user-property tenant=acme');
  });

  it('reads a password shown as *** from $MQTT_PASSWORD', () => {
    expect(asBridgescopeCall(request, { mqttUrl: 'mqtt://u:***@h:1883', exchange: 'amq.direct' })).toContain('--mqtt mqtt://u:"$MQTT_PASSWORD"@h:1883 ');
  });
});
