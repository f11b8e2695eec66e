/**
 * The trace store's unread steps, kept as flat facts instead of objects. A step nobody has read yet (every step of an
 * untraced call: the CLI, the benchmark, a library user) was kept as its draft: five to ten small objects per step (the
 * draft, its detail, its wire's source and facts, amqplib's property tables, the body's head), all of which outlive a
 * young-generation collection, are copied by it, and are then marked for as long as the step is kept: 13-16 % of the
 * process's CPU at c=100 (docs/PERFORMANCE.md, eighth pass). Here a step's values are written, in order, into typed
 * arrays the collector never looks into: numbers and flags as numbers, a string as its UTF-16 code units, a plain object
 * as its shape (the list of its keys, shared by every object with the same keys) followed by its values, a Buffer (a
 * body's head: a view of the body the writer handed over) as a copy of its bytes. A string written lately in the same
 * segment (a topic, a routing key, a step's kind: they come back in every call) is pointed at, not copied again.
 * Reading a step back builds the same values: equal, keys in the same order, a Buffer of its own memory; anything else
 * that is not a plain value (a Date, a class instance, a Buffer over 8 KiB) is kept by reference, as it was.
 *
 * The tape is a ring of segments, allocated as they are first needed. When the ring comes round to a segment that still
 * holds steps of a kept RPC (an RPC that lives long, or more steps per RPC than the ring was sized for), those steps are
 * read back into drafts first, so nothing is ever lost: the tape decides how a step is kept, never whether.
 */

import { TRACE_BODY_PREVIEW_BYTES } from '../../shared/trace';

/** What a cell holds. */
const UNDEFINED = 0;
const NULL = 1;
const TRUE = 2;
const FALSE = 3;
/** a number, in `nums` */
const NUMBER = 4;
/** a string: its UTF-16 code units in `bytes`, where `nums` says (length in code units * 2^24 + offset in bytes) */
const STRING = 5;
/** a plain object: its shape's number in `nums`, its values in the cells after it */
const OBJECT = 6;
/** an array: its length in `nums`, its items in the cells after it */
const ARRAY = 7;
/** anything else, kept by reference: its index in `refs` in `nums` */
const REFERENCE = 8;
/** a Buffer (a message body's head): its bytes copied in `bytes`, where `nums` says (length * 2^24 + offset); read back as a Buffer of its own */
const BYTES = 9;

/** Cells per segment: a power of two. */
const SEGMENT_BITS = 14;
const SEGMENT_CELLS = 1 << SEGMENT_BITS;
const SEGMENT_MASK = SEGMENT_CELLS - 1;
/** Bytes of strings and body heads per segment: an untraced call writes about 5 a cell (its body heads, topics and names). */
const SEGMENT_BYTES = SEGMENT_CELLS * 20;
/** A Buffer longer than this is kept by reference; a body's head (at most TRACE_BODY_PREVIEW_BYTES) is always copied. */
export const MAX_COPIED_BYTES = Math.max(8192, TRACE_BODY_PREVIEW_BYTES);
const LENGTH_UNIT = 2 ** 24;
/** Nested deeper than this, a value is kept by reference (a cycle would never end). */
const MAX_DEPTH = 8;
/** An object with more keys is kept by reference. */
const MAX_KEYS = 64;
/** Shapes known in all (every store shares them); past it, objects of new shapes are kept by reference. */
const MAX_SHAPES = 4096;

/** The list of keys of a plain object, in order; found by walking from the empty shape key by key. */
class Shape {
  readonly next = new Map<string, Shape>();
  /** the key and shape last gone to from here: objects of one kind come again and again, one comparison finds it */
  lastKey: string | undefined = undefined;
  lastNext: Shape | undefined = undefined;
  constructor(
    readonly id: number,
    readonly keys: readonly string[],
  ) {}
}

const emptyShape = new Shape(0, []);
const shapes: Shape[] = [emptyShape];

function shapeAfter(shape: Shape, key: string): Shape | undefined {
  if (shape.lastKey === key) return shape.lastNext;
  let next = shape.next.get(key);
  if (next === undefined) {
    if (shapes.length >= MAX_SHAPES) return undefined;
    next = new Shape(shapes.length, [...shape.keys, key]);
    shapes.push(next);
    shape.next.set(key, next);
  }
  shape.lastKey = key;
  shape.lastNext = next;
  return next;
}

/** Plain objects (object literals, JSON, amqplib's tables) are taken apart; anything with another prototype is kept as it is. */
function isPlainObject(value: object): value is Record<string, unknown> {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype;
}

/** Strings up to this long are copied code unit by code unit here; longer ones by Buffer#write (a call into native code). */
const SHORT_STRING = 24;
/**
 * Strings at least this long are looked for among the segment's recent ones first: the same topic, routing key,
 * consumer tag and step kind come back in every call, and a string already there is pointed at, not copied again.
 */
const RECALLED_STRING = 8;
/** Longer strings (a body's text, a long header) are not recalled: they rarely come again, and the slot would keep them alive. */
const MAX_RECALLED_STRING = 128;
/** Slots of the segment's recent strings (a power of two), found by a hash of a few of their code units. */
const RECALL_SLOTS = 32;

/** The slot of a string of at least RECALLED_STRING code units: its length and three code units (a `/` and a `.` differ). */
function recallSlot(value: string): number {
  const length = value.length;
  return (length * 5 + value.charCodeAt(length - 1) + value.charCodeAt(length >> 1) * 3 + value.charCodeAt(length >> 3) * 7) & (RECALL_SLOTS - 1);
}

/** A kept RPC whose steps are on the tape: told to read them back before their segment is written again. */
export interface TapeOwner {
  /** false once the RPC went from the store: its cells are nobody's */
  readonly live: boolean;
  /** reads every step of its own that lies in `segment` back into a draft */
  unTape(segment: number): void;
}

class Segment {
  readonly tags = new Uint8Array(SEGMENT_CELLS);
  readonly nums = new Float64Array(SEGMENT_CELLS);
  /** strings (their UTF-16 code units, little-endian as Buffer's utf16le) and Buffers' bytes: nothing for the garbage collector to follow; never read before written */
  readonly bytes = Buffer.allocUnsafeSlow(SEGMENT_BYTES);
  bytesUsed = 0;
  /** strings written here lately, and where (as a STRING cell's number): see RECALLED_STRING */
  readonly recalled: Array<string | undefined> = new Array<string | undefined>(RECALL_SLOTS).fill(undefined);
  readonly recalledAt = new Float64Array(RECALL_SLOTS);
  /** values kept by reference (rare: a Buffer or a Date in a message's properties) */
  refs: unknown[] = [];
  /** the RPCs with steps here (one entry per run of steps of the same RPC) */
  owners: TapeOwner[] = [];
}

/** Thrown inside `write` when a record does not fit in what is left of its segment. */
const NO_ROOM = Symbol('no room');

export class FactTape {
  private readonly segments: Segment[] = [];
  private readonly maxSegments: number;
  /** the segment being written and the next free cell in it */
  private current = -1;
  private cell = SEGMENT_CELLS;
  /** while writing: the segment's arrays */
  private tags: Uint8Array = new Uint8Array(0);
  private nums: Float64Array = new Float64Array(0);
  private segment: Segment | undefined;
  /** while reading: the next cell */
  private at = 0;
  /**
   * Whether the last record written kept a value by reference (a Date, a Buffer over 8 KiB, an object of a shape past
   * the shapes' limit): what it holds is then shared with the writer's objects, not copied.
   */
  keptReferences = false;

  /** `cells` bounds the memory (about 29 bytes a cell with its characters): beyond it the oldest segment is written again. */
  constructor(cells: number) {
    this.maxSegments = Math.max(2, Math.ceil(cells / SEGMENT_CELLS));
  }

  /**
   * Writes a record: its `head` number (readable without reading the record: `head`) then `values`, one after the other
   * (the caller may reuse the array). Returns where it is, or -1 when it cannot be kept on the tape (bigger than a
   * segment): the caller keeps it as it is. `keptReferences` then says whether anything of it was kept by reference.
   */
  write(owner: TapeOwner, head: number, values: readonly unknown[]): number {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      if (this.cell >= SEGMENT_CELLS - 1) this.nextSegment();
      const start = this.cell;
      const segment = this.segment as Segment;
      const bytes = segment.bytesUsed;
      const refs = segment.refs.length;
      try {
        this.nums[start] = head;
        this.tags[start] = NUMBER;
        this.cell = start + 1;
        for (let index = 0; index < values.length; index += 1) this.put(values[index], 0);
      } catch (err) {
        if (err !== NO_ROOM) throw err;
        // Not enough room left in this segment: start the next one (a record never spans two). This segment is not
        // written again until the ring comes round (which forgets its recalled strings).
        segment.bytesUsed = bytes;
        segment.refs.length = refs;
        this.cell = SEGMENT_CELLS;
        continue;
      }
      if (segment.owners[segment.owners.length - 1] !== owner) segment.owners.push(owner);
      this.keptReferences = segment.refs.length > refs;
      return (this.current << SEGMENT_BITS) | start;
    }
    this.cell = SEGMENT_CELLS;
    return -1;
  }

  /** The head number of the record at `position`. */
  head(position: number): number {
    return (this.segments[position >>> SEGMENT_BITS] as Segment).nums[position & SEGMENT_MASK] as number;
  }

  /** The values of the record at `position`, as written: `count` of them. */
  read(position: number, count: number): unknown[] {
    this.use(this.segments[position >>> SEGMENT_BITS] as Segment);
    this.at = (position & SEGMENT_MASK) + 1;
    const values = new Array<unknown>(count);
    for (let index = 0; index < count; index += 1) values[index] = this.get();
    this.restoreWriting();
    return values;
  }

  /** The `index`th value of the record at `position` (the values before it are skipped, not built). */
  readOne(position: number, index: number): unknown {
    this.use(this.segments[position >>> SEGMENT_BITS] as Segment);
    this.at = (position & SEGMENT_MASK) + 1;
    for (let skipped = 0; skipped < index; skipped += 1) this.passValue();
    const value = this.get();
    this.restoreWriting();
    return value;
  }

  /** Moves the read cursor past one value (and what it holds), building nothing. */
  private passValue(): void {
    const cell = this.at;
    this.at = cell + 1;
    const tag = this.tags[cell];
    if (tag === ARRAY) {
      for (let index = this.nums[cell] as number; index > 0; index -= 1) this.passValue();
    } else if (tag === OBJECT) {
      for (let index = (shapes[this.nums[cell] as number] as Shape).keys.length; index > 0; index -= 1) this.passValue();
    }
  }

  /** The segment of a position (what `unTape` is told). */
  static segmentOf(position: number): number {
    return position >>> SEGMENT_BITS;
  }

  /** Forgets everything written (every owner must have forgotten its positions). */
  clear(): void {
    for (const segment of this.segments) segment.owners = [];
    this.current = -1;
    this.cell = SEGMENT_CELLS;
    this.restoreWriting();
  }

  private use(segment: Segment): void {
    this.segment = segment;
    this.tags = segment.tags;
    this.nums = segment.nums;
  }

  private restoreWriting(): void {
    const segment = this.segments[this.current];
    if (segment !== undefined) this.use(segment);
  }

  private nextSegment(): void {
    const next = (this.current + 1) % this.maxSegments;
    let segment = this.segments[next];
    if (segment === undefined) {
      segment = new Segment();
      this.segments[next] = segment;
    } else {
      // The ring came round: whatever kept RPC still has steps here reads them back first.
      const owners = segment.owners;
      segment.owners = [];
      for (const owner of owners) if (owner.live) owner.unTape(next);
      segment.refs = [];
      segment.bytesUsed = 0;
      segment.recalled.fill(undefined);
    }
    this.current = next;
    this.cell = 0;
    this.restoreWriting();
  }

  private put(value: unknown, depth: number): void {
    const cell = this.cell;
    if (cell >= SEGMENT_CELLS) throw NO_ROOM;
    this.cell = cell + 1;
    switch (typeof value) {
      case 'string':
        this.tags[cell] = STRING;
        this.nums[cell] = this.putString(value);
        return;
      case 'number':
        this.tags[cell] = NUMBER;
        this.nums[cell] = value;
        return;
      case 'boolean':
        this.tags[cell] = value ? TRUE : FALSE;
        return;
      case 'undefined':
        this.tags[cell] = UNDEFINED;
        return;
      case 'object':
        if (value === null) {
          this.tags[cell] = NULL;
          return;
        }
        if (depth < MAX_DEPTH) {
          if (Array.isArray(value)) {
            this.tags[cell] = ARRAY;
            this.nums[cell] = value.length;
            for (let index = 0; index < value.length; index += 1) this.put(value[index], depth + 1);
            return;
          }
          if (isPlainObject(value)) {
            if (this.putObject(cell, value, depth)) return;
          } else if (value instanceof Buffer && value.byteLength <= MAX_COPIED_BYTES) {
            this.tags[cell] = BYTES;
            this.nums[cell] = this.putBytes(value);
            return;
          }
        }
        break;
      default:
        break;
    }
    const refs = (this.segment as Segment).refs;
    this.tags[cell] = REFERENCE;
    this.nums[cell] = refs.length;
    refs.push(value);
  }

  /** Writes a string's code units (or finds it among the recent ones); returns its STRING cell's number. */
  private putString(value: string): number {
    const segment = this.segment as Segment;
    const length = value.length;
    let slot = -1;
    if (length >= RECALLED_STRING && length <= MAX_RECALLED_STRING) {
      slot = recallSlot(value);
      if (segment.recalled[slot] === value) return segment.recalledAt[slot] as number;
    }
    // UTF-16 code units start at an even byte.
    const from = (segment.bytesUsed + 1) & ~1;
    if (from + length * 2 > SEGMENT_BYTES) throw NO_ROOM;
    const bytes = segment.bytes;
    if (length > SHORT_STRING) bytes.write(value, from, 'utf16le');
    else {
      for (let index = 0, at = from; index < length; index += 1, at += 2) {
        const unit = value.charCodeAt(index);
        bytes[at] = unit & 0xff;
        bytes[at + 1] = unit >>> 8;
      }
    }
    segment.bytesUsed = from + length * 2;
    const packed = length * LENGTH_UNIT + from;
    if (slot >= 0) {
      segment.recalled[slot] = value;
      segment.recalledAt[slot] = packed;
    }
    return packed;
  }

  /** Copies a Buffer's bytes; returns its BYTES cell's number. */
  private putBytes(value: Buffer): number {
    const segment = this.segment as Segment;
    const from = segment.bytesUsed;
    const length = value.byteLength;
    if (from + length > SEGMENT_BYTES) throw NO_ROOM;
    segment.bytes.set(value, from);
    segment.bytesUsed = from + length;
    return length * LENGTH_UNIT + from;
  }

  /** Writes an object's values after its cell, then its shape in that cell; false (nothing kept) when it has too many or new keys past the limit. */
  private putObject(cell: number, value: Record<string, unknown>, depth: number): boolean {
    let shape: Shape | undefined = emptyShape;
    let keys = 0;
    for (const key in value) {
      keys += 1;
      // `__proto__` would set the prototype of the object read back, not a key of it.
      shape = keys > MAX_KEYS || key === '__proto__' ? undefined : shapeAfter(shape, key);
      if (shape === undefined) {
        this.cell = cell + 1;
        return false;
      }
      this.put(value[key], depth + 1);
    }
    this.tags[cell] = OBJECT;
    this.nums[cell] = shape.id;
    return true;
  }

  private get(): unknown {
    const cell = this.at;
    this.at = cell + 1;
    switch (this.tags[cell]) {
      case STRING: {
        const packed = this.nums[cell] as number;
        const length = Math.floor(packed / LENGTH_UNIT);
        const from = packed - length * LENGTH_UNIT;
        return (this.segment as Segment).bytes.toString('utf16le', from, from + length * 2);
      }
      case BYTES: {
        const packed = this.nums[cell] as number;
        const length = Math.floor(packed / LENGTH_UNIT);
        const from = packed - length * LENGTH_UNIT;
        // Its own memory (not a view of the segment, written again later; not a slice of Buffer's shared pool).
        const copy = Buffer.allocUnsafeSlow(length);
        (this.segment as Segment).bytes.copy(copy, 0, from, from + length);
        return copy;
      }
      case REFERENCE:
        return (this.segment as Segment).refs[this.nums[cell] as number];
      case NUMBER:
        return this.nums[cell];
      case TRUE:
        return true;
      case FALSE:
        return false;
      case NULL:
        return null;
      case ARRAY: {
        const items = new Array<unknown>(this.nums[cell] as number);
        for (let index = 0; index < items.length; index += 1) items[index] = this.get();
        return items;
      }
      case OBJECT: {
        const { keys } = shapes[this.nums[cell] as number] as Shape;
        const object: Record<string, unknown> = {};
        for (const key of keys) object[key] = this.get();
        return object;
      }
      default:
        return undefined;
    }
  }
}
