/**
 * AMQP 0-9-1 field tables (the headers of a message, and the firehose's own header tables), decoded to the same values
 * amqplib gives (its `decodeFields`). The firehose tracer reads its messages' headers with this reader instead of
 * through amqplib, and keeps the traced message's own properties table as its bytes until a reader asks for the step
 * (see `firehose-headers.ts`), when `decodeFieldTable` turns them into what amqplib would have given.
 */

/** A field table's bytes whose values were not wanted yet: decoded by `decodeFieldTable` when they are. */
export type EncodedTable = Buffer;

/** What a table says: the values amqplib would give (strings for `S`, Buffers for `x`, `{ '!': 'timestamp' }`...). */
export type FieldTable = Record<string, unknown>;

const T = 0x74; // t boolean
const LOWER_B = 0x62; // b int8
const UPPER_B = 0x42; // B uint8
const LOWER_S = 0x73; // s int16
const LOWER_U = 0x75; // u uint16
const UPPER_I = 0x49; // I int32
const LOWER_I = 0x69; // i uint32
const LOWER_L = 0x6c; // l int64
const LOWER_F = 0x66; // f float
const LOWER_D = 0x64; // d double
const UPPER_D = 0x44; // D decimal
export const UPPER_S = 0x53; // S long string
export const UPPER_A = 0x41; // A array
const UPPER_T = 0x54; // T timestamp
export const UPPER_F = 0x46; // F table
const UPPER_V = 0x56; // V void
const LOWER_X = 0x78; // x byte array

/** A reader over one buffer: one object per table decoded, no closure per call. */
export class FieldReader {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  /** A field table of `length` bytes from here. */
  table(length: number): FieldTable {
    const { buf } = this;
    const end = this.offset + length;
    if (end > buf.length) throw new RangeError('field table runs past its frame');
    const fields: FieldTable = {};
    while (this.offset < end) {
      const keyLength = buf[this.offset++]!;
      const key = shortText(buf, this.offset, keyLength);
      this.offset += keyLength;
      fields[key] = this.value();
    }
    if (this.offset !== end) throw new RangeError('field table runs past its own length');
    return fields;
  }

  /**
   * A nested table (its tag next) left as its bytes: a view of the frame (of the socket's read buffer), which whoever
   * keeps it copies (the trace store does: see `ownedHead`).
   */
  encoded(): EncodedTable {
    const { buf } = this;
    const length = buf.readUInt32BE(this.offset + 1);
    const start = this.offset + 5;
    if (start + length > buf.length) throw new RangeError('field table runs past its frame');
    this.offset = start + length;
    return buf.subarray(start, start + length);
  }

  value(): unknown {
    const { buf } = this;
    const tag = buf[this.offset++];
    let value: unknown;
    switch (tag) {
      case UPPER_S: {
        const length = buf.readUInt32BE(this.offset);
        const start = this.offset + 4;
        if (start + length > buf.length) throw new RangeError('string runs past its frame');
        value = buf.toString('utf8', start, start + length);
        this.offset = start + length;
        return value;
      }
      case UPPER_F:
        return this.table(this.length());
      case UPPER_A: {
        const end = this.offset + 4 + buf.readUInt32BE(this.offset);
        this.offset += 4;
        if (end > buf.length) throw new RangeError('array runs past its frame');
        const items: unknown[] = [];
        while (this.offset < end) items.push(this.value());
        return items;
      }
      case T:
        return buf[this.offset++] !== 0;
      case LOWER_B:
        value = buf.readInt8(this.offset);
        this.offset += 1;
        return value;
      case UPPER_B:
        value = buf.readUInt8(this.offset);
        this.offset += 1;
        return value;
      case LOWER_S:
        value = buf.readInt16BE(this.offset);
        this.offset += 2;
        return value;
      case LOWER_U:
        value = buf.readUInt16BE(this.offset);
        this.offset += 2;
        return value;
      case UPPER_I:
        value = buf.readInt32BE(this.offset);
        this.offset += 4;
        return value;
      case LOWER_I:
        value = buf.readUInt32BE(this.offset);
        this.offset += 4;
        return value;
      case LOWER_L:
        value = Number(buf.readBigInt64BE(this.offset));
        this.offset += 8;
        return value;
      case LOWER_F:
        value = buf.readFloatBE(this.offset);
        this.offset += 4;
        return value;
      case LOWER_D:
        value = buf.readDoubleBE(this.offset);
        this.offset += 8;
        return value;
      case UPPER_D: {
        const places = buf.readUInt8(this.offset);
        const digits = buf.readUInt32BE(this.offset + 1);
        this.offset += 5;
        return { '!': 'decimal', value: { places, digits } };
      }
      case UPPER_T:
        value = { '!': 'timestamp', value: Number(buf.readBigUInt64BE(this.offset)) };
        this.offset += 8;
        return value;
      case UPPER_V:
        return null;
      case LOWER_X: {
        const length = buf.readUInt32BE(this.offset);
        const start = this.offset + 4;
        if (start + length > buf.length) throw new RangeError('byte array runs past its frame');
        this.offset = start + length;
        return buf.subarray(start, start + length);
      }
      default:
        throw new TypeError(`Unexpected field type tag ${tag === undefined ? '(none)' : JSON.stringify(String.fromCharCode(tag))}`);
    }
  }

  /** Past the value here, decoding only what its length is not written for (a number's type gives its size). */
  skipValue(): void {
    const { buf } = this;
    const tag = buf[this.offset];
    switch (tag) {
      case UPPER_S:
      case UPPER_F:
      case UPPER_A:
      case LOWER_X: {
        const end = this.offset + 5 + buf.readUInt32BE(this.offset + 1);
        if (end > buf.length) throw new RangeError('value runs past its frame');
        this.offset = end;
        return;
      }
      default:
        this.value();
    }
  }

  length(): number {
    const length = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return length;
  }
}

/** A key (a short string): ASCII (every key RabbitMQ and the usual clients write) without a call into native code. */
export function shortText(buf: Buffer, start: number, length: number): string {
  if (start + length > buf.length) throw new RangeError('key runs past its frame');
  if (length <= 32) {
    let key = '';
    for (let i = start; i < start + length; i++) {
      const code = buf[i]!;
      if (code >= 0x80) return buf.toString('utf8', start, start + length);
      key += String.fromCharCode(code);
    }
    return key;
  }
  return buf.toString('utf8', start, start + length);
}

/** The values of a whole field table (its bytes without the length before them), as amqplib's `decodeFields` gives them. */
export function decodeFieldTable(bytes: Uint8Array): FieldTable {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return new FieldReader(buf).table(buf.length);
}
