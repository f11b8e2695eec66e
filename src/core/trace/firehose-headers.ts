/**
 * The firehose's header table, read straight from the content header frame into what the tracer uses: no table of
 * amqplib's (its basic-properties object, the headers table, the traced message's own properties and headers as nested
 * tables), no string decoded twice. Profiled traced at c=100, amqplib's decoding of the four firehose messages per RPC
 * took about a third of the tracer's process beyond the bare consumer's; the names in those headers (node, vhost, user,
 * exchange, connection, queues, the request's routing key) are the same message after message, and are recognised by
 * their bytes here instead of being decoded and interned each time. The traced message's own properties stay as their
 * table's bytes until the step is read (`decodeFieldTable`).
 */
import { FieldReader, UPPER_A, UPPER_F, UPPER_S, type EncodedTable } from './field-table';
import { traceNames } from './intern';

/** What the tracer reads of a firehose message's headers (see `parseFirehoseMessage`). */
export class FirehoseHeaders {
  routingKeys: string[] = [];
  routedQueues: string[] = [];
  redelivered = false;
  node: string | undefined = undefined;
  /** the traced message's own properties and headers (header `properties`), as their field table's bytes (a view of the frame) */
  properties: EncodedTable | undefined = undefined;
  /** the same, as amqplib decoded them (a connection the frame reader did not take over) */
  decoded: Record<string, unknown> | undefined = undefined;
  connection: string | undefined = undefined;
  channel: number | undefined = undefined;
  user: string | undefined = undefined;
}

/** Names recognised by their bytes: a slot per hash, holding the bytes and the interned string last seen there. */
const NAME_SLOTS = 256;
const MAX_NAME_BYTES = 96;
const nameBytes = new Uint8Array(NAME_SLOTS * MAX_NAME_BYTES);
const nameLengths = new Int32Array(NAME_SLOTS).fill(-1);
const nameTexts: string[] = new Array<string>(NAME_SLOTS).fill('');

/** The string of `length` bytes at `start` (UTF-8), one copy for all: the one seen last with the same bytes, if any. */
export function nameAt(buf: Uint8Array, start: number, length: number): string {
  if (start + length > buf.length) throw new RangeError('string runs past its frame');
  if (length > MAX_NAME_BYTES) return traceNames.of(Buffer.from(buf.buffer, buf.byteOffset + start, length).toString('utf8'));
  let hash = length;
  for (let i = start; i < start + length; i++) hash = (Math.imul(hash, 31) + buf[i]!) | 0;
  const slot = (hash ^ (hash >>> 8)) & (NAME_SLOTS - 1);
  const at = slot * MAX_NAME_BYTES;
  if (nameLengths[slot] === length) {
    let same = true;
    for (let i = 0; i < length; i++) {
      if (nameBytes[at + i] !== buf[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return nameTexts[slot]!;
  }
  const text = traceNames.of(Buffer.from(buf.buffer, buf.byteOffset + start, length).toString('utf8'));
  nameBytes.set(buf.subarray(start, start + length), at);
  nameLengths[slot] = length;
  nameTexts[slot] = text;
  return text;
}

/** A decoded value as a name: a string or a byte array's text, interned; undefined for anything else. */
function nameOf(value: unknown): string | undefined {
  return typeof value === 'string' ? traceNames.of(value) : Buffer.isBuffer(value) ? traceNames.of(value.toString('utf8')) : undefined;
}

/** An item of a list of names: a name, or anything else as its text. */
function itemName(item: unknown): string {
  return nameOf(item) ?? traceNames.of(String(item));
}

/** A decoded value as a list of names: an array's items; no names for anything else. */
function namesOf(value: unknown): string[] {
  return Array.isArray(value) ? value.map(itemName) : [];
}

/** The value here as a name: a string (tag `S`) recognised by its bytes, anything else decoded as amqplib would, then `nameOf`. */
function readName(reader: FieldReader): string | undefined {
  const { buf } = reader;
  if (buf[reader.offset] !== UPPER_S) return nameOf(reader.value());
  const length = buf.readUInt32BE(reader.offset + 1);
  const text = nameAt(buf, reader.offset + 5, length);
  reader.offset += 5 + length;
  return text;
}

/** An array of names (tag `A` of `S`s, what RabbitMQ writes); anything else as `namesOf` reads it. */
function readNames(reader: FieldReader): string[] {
  const { buf } = reader;
  if (buf[reader.offset] !== UPPER_A) return namesOf(reader.value());
  const end = reader.offset + 5 + buf.readUInt32BE(reader.offset + 1);
  if (end > buf.length) throw new RangeError('array runs past its frame');
  reader.offset += 5;
  const list: string[] = [];
  while (reader.offset < end) {
    list.push(buf[reader.offset] === UPPER_S ? (readName(reader) as string) : itemName(reader.value()));
  }
  return list;
}

/** What the tracer reads of headers amqplib decoded (a connection the frame reader did not take over). */
export function headersFromDecoded(decoded: Record<string, unknown>): FirehoseHeaders {
  const headers = new FirehoseHeaders();
  headers.routingKeys = namesOf(decoded.routing_keys);
  headers.routedQueues = namesOf(decoded.routed_queues);
  headers.redelivered = decoded.redelivered === 1 || decoded.redelivered === true;
  headers.node = nameOf(decoded.node);
  const properties = decoded.properties;
  if (typeof properties === 'object' && properties !== null && !Buffer.isBuffer(properties)) headers.decoded = properties as Record<string, unknown>;
  headers.connection = nameOf(decoded.connection);
  if (typeof decoded.channel === 'number') headers.channel = decoded.channel;
  headers.user = nameOf(decoded.user);
  return headers;
}

/** The keys the tracer reads, told apart by their bytes (no string is made of a key). */
const ROUTING_KEYS = 0;
const ROUTED_QUEUES = 1;
const PROPERTIES = 2;
const NODE = 3;
const CONNECTION = 4;
const USER = 5;
const CHANNEL = 6;
const REDELIVERED = 7;
const KEY_BYTES = ['routing_keys', 'routed_queues', 'properties', 'node', 'connection', 'user', 'channel', 'redelivered'].map((key) => Buffer.from(key, 'latin1'));

/** Which of the keys the tracer reads is at `start` (`length` bytes long), or -1 for any other. */
function keyAt(buf: Buffer, start: number, length: number): number {
  let key: number;
  switch (length) {
    case 12:
      key = ROUTING_KEYS;
      break;
    case 13:
      key = ROUTED_QUEUES;
      break;
    case 10:
      key = buf[start] === 0x70 ? PROPERTIES : CONNECTION;
      break;
    case 4:
      key = buf[start] === 0x6e ? NODE : USER;
      break;
    case 7:
      key = CHANNEL;
      break;
    case 11:
      key = REDELIVERED;
      break;
    default:
      return -1;
  }
  const expected = KEY_BYTES[key]!;
  if (start + length > buf.length) throw new RangeError('key runs past its frame');
  for (let i = 0; i < length; i++) if (buf[start + i] !== expected[i]) return -1;
  return key;
}

/** AMQP basic class, and the one property flag of a firehose message (RabbitMQ sets only its headers). */
const BASIC_CLASS = 60;
const HEADERS_ONLY = 0x2000;

/**
 * A content header frame's payload (class, weight, body size, flags, properties) read as a firehose message's: its body
 * size and what the tracer reads of its headers. Undefined when its properties are not a headers table alone, or the
 * table cannot be followed: amqplib then decodes (or refuses) it as always.
 */
export function readFirehoseHeaders(payload: Buffer): { size: number; headers: FirehoseHeaders } | undefined {
  if (payload.length < 18 || payload.readUInt16BE(0) !== BASIC_CLASS || payload.readUInt16BE(12) !== HEADERS_ONLY) return undefined;
  const size = payload.readUInt32BE(4) * 2 ** 32 + payload.readUInt32BE(8);
  const reader = new FieldReader(payload);
  try {
    const end = 18 + payload.readUInt32BE(14);
    if (end !== payload.length) return undefined;
    reader.offset = 18;
    const headers = new FirehoseHeaders();
    while (reader.offset < end) {
      const keyLength = payload[reader.offset]!;
      const key = keyAt(payload, reader.offset + 1, keyLength);
      reader.offset += 1 + keyLength;
      switch (key) {
        case ROUTING_KEYS:
          headers.routingKeys = readNames(reader);
          break;
        case ROUTED_QUEUES:
          headers.routedQueues = readNames(reader);
          break;
        case PROPERTIES:
          if (payload[reader.offset] === UPPER_F) headers.properties = reader.encoded();
          else reader.value();
          break;
        case NODE:
          headers.node = readName(reader);
          break;
        case CONNECTION:
          headers.connection = readName(reader);
          break;
        case USER:
          headers.user = readName(reader);
          break;
        case CHANNEL: {
          const channel = reader.value();
          headers.channel = typeof channel === 'number' ? channel : undefined;
          break;
        }
        case REDELIVERED: {
          const redelivered = reader.value();
          headers.redelivered = redelivered === 1 || redelivered === true;
          break;
        }
        default:
          // exchange_name, vhost and anything a later RabbitMQ adds: not read by the tracer, skipped.
          reader.skipValue();
      }
    }
    return reader.offset === end ? { size, headers } : undefined;
  } catch {
    return undefined;
  }
}
