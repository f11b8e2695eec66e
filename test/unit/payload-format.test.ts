import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeBase64,
  decodeHex,
  encodeBase64,
  encodeHex,
  hexDump,
  MAX_FILE_PAYLOAD_BYTES,
  payloadProblem,
  showReply,
} from '../../src/shared/payload-format';
import { readBody } from '../../src/core/rpc/envelope';
import { readPayload } from '../../src/core/rpc/call-options';
import { expiryProblem, mqtt5OptionRules, userPropertiesProblem } from '../../src/shared/mqtt5-options';
import { brokerRules } from '../../src/shared/broker-versions';

describe('payload formats: what a user types becomes the bytes sent', () => {
  it('reads hex with spaces, colons, newlines and 0x between bytes', () => {
    expect(decodeHex('0x7b 22:0A\n00')).toEqual({ ok: true, bytes: new Uint8Array([0x7b, 0x22, 0x0a, 0x00]) });
  });

  it.each([
    ['7g', 'Not valid hex: "g" is not a hex digit (0-9, a-f; spaces and : may separate bytes).'],
    ['abc', 'Not valid hex: 3 digits, an odd number (each byte is two digits).'],
  ])('says what is wrong with hex %j in one sentence', (text, message) => {
    expect(payloadProblem('hex', text)).toBe(message);
  });

  it.each([
    ['ab$c', 'Not valid base64: "$" is not a base64 character (A-Z, a-z, 0-9, +, /).'],
    ['ab=c', 'Not valid base64: "=" may only end the text, as padding.'],
    ['abcde', 'Not valid base64: 5 characters cannot be whole bytes (one too many or one missing).'],
  ])('says what is wrong with base64 %j in one sentence', (text, message) => {
    expect(payloadProblem('base64', text)).toBe(message);
  });

  it('takes url-safe and unpadded base64', () => {
    expect(decodeBase64('-_8')).toEqual({ ok: true, bytes: new Uint8Array([0xfb, 0xff]) });
  });

  it('round trips any bytes through hex and base64', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(decodeHex(encodeHex(bytes))).toEqual({ ok: true, bytes });
        expect(decodeBase64(encodeBase64(bytes))).toEqual({ ok: true, bytes });
      }),
    );
  });

  it('refuses a file over the cap with its size and the cap, and asks for a file when none was chosen', () => {
    const big = encodeBase64(new Uint8Array(MAX_FILE_PAYLOAD_BYTES + 1));
    expect(payloadProblem('file', big)).toBe("The file is 16.0 MiB; Compose sends files of at most 16.0 MiB (RabbitMQ 4.1's default maximum MQTT packet).");
    expect(payloadProblem('file', '')).toBe('Choose a file to send.');
  });

  it('keeps JSON as it was: empty is fine, a syntax error is a sentence', () => {
    expect(payloadProblem('json', '')).toBeUndefined();
    expect(payloadProblem('json', '{')).toMatch(/^Not valid JSON: /);
    expect(payloadProblem('text', '{')).toBeUndefined();
  });

  it('refuses bad hex in the core with the same sentence, naming the field', () => {
    expect(() => readPayload('hex', 'zz')).toThrow('The payload: Not valid hex: "z" is not a hex digit');
    expect(readPayload('text', 'héllo').rawBody).toEqual(new TextEncoder().encode('héllo'));
  });
});

describe('reply bodies shown in the same formats', () => {
  const json = readBody(Buffer.from('{"id":"1","result":{"t":21.5}}'));
  const binary = readBody(Buffer.from([0x00, 0xff, 0x41, 0x42, 0x43, 0x0a, ...Array.from({ length: 14 }, (_, i) => 0x61 + i)]));

  it('shows pretty JSON when it parses, text when UTF-8, else a hex dump', () => {
    expect(showReply(json)).toBe('{\n  "id": "1",\n  "result": {\n    "t": 21.5\n  }\n}');
    expect(showReply(readBody(Buffer.from('done')))).toBe('done');
    expect(showReply(binary)).toBe(
      [
        '00000000  00 ff 41 42 43 0a 61 62  63 64 65 66 67 68 69 6a  |..ABC.abcdefghij|',
        '00000010  6b 6c 6d 6e              ' + ' '.repeat(23) + '  |klmn|',
      ].join('\n'),
    );
  });

  it('shows the exact bytes of a JSON reply as hex or base64, as it arrived (not re-encoded)', () => {
    const spaced = readBody(Buffer.from('{ "id" : 1 }'));
    expect(showReply(spaced, 'base64')).toBe(Buffer.from('{ "id" : 1 }').toString('base64'));
    expect(showReply(spaced, 'text')).toBe('{ "id" : 1 }');
    expect(showReply(spaced, 'hex').startsWith('00000000  7b 20 22 69')).toBe(true);
  });

  it('cuts a long dump and says how much is left', () => {
    expect(hexDump(new Uint8Array(40), 32).split('\n').at(-1)).toBe('... 8 more bytes');
  });
});

describe('MQTT 5 options: checks and what each broker version does with them', () => {
  it('checks the expiry and nameless user properties as the user types', () => {
    expect(expiryProblem('')).toBeUndefined();
    expect(expiryProblem(0)).toBe('The message expiry must be a whole number of seconds, at least 1 (or empty for none).');
    expect(expiryProblem(1.5)).toBe('The message expiry must be a whole number of seconds, at least 1 (or empty for none).');
    expect(userPropertiesProblem([{ key: 'a', value: '1' }, { key: '', value: '2' }])).toBe('User property 2 has a value but no name.');
    expect(userPropertiesProblem([{ key: '', value: '' }])).toBeUndefined();
  });

  it('says 3.10-3.12 send none of them, and 3.13+ maps each to AMQP', () => {
    const old = mqtt5OptionRules(brokerRules('3.10.8'));
    expect(old.summary).toContain('RabbitMQ 3.10.8 has no MQTT 5');
    expect(old.lines.every((line) => !line.honoured && line.effect === 'not sent (no MQTT 5)')).toBe(true);
    const modern = mqtt5OptionRules(brokerRules('3.13.7'));
    expect(modern.lines.map((line) => [line.option, line.effect])).toEqual([
      ['Response topic', 'AMQP header x-reply-to-topic, already dotted (reply_to is not set)'],
      ['Correlation data', 'AMQP correlation_id (header x-correlation-id when not a short UTF-8 string)'],
      ['User properties', 'AMQP headers, one per property'],
      ['Message expiry', 'a per-message TTL (AMQP expiration)'],
    ]);
    expect(mqtt5OptionRules(brokerRules(undefined)).lines[0]?.effect).toMatch(/^3\.13\+: /);
  });
});
