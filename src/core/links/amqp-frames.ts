/**
 * How an amqplib connection gathers its frames' bytes, taken over for a connection that receives a stream of small
 * messages (the firehose tracer's). amqplib 2.x joins what is left of the last read with every new read
 * (`Buffer.concat([rest, incoming])`, a copy of the whole read even when nothing was left); profiled traced at c=100
 * that copy was 15 us an RPC of the tracer's process. Here a read is used as it is when nothing was left over, and a
 * frame cut by reads is completed with just the bytes it lacks, joined once (the rest of the last read waits its turn):
 * only a frame that reads cut is copied, once (again when it must wait for a read that has not come yet). Frames are
 * still decoded by amqplib; a content header frame can be read by the caller instead (`header`).
 */

/** The part of amqplib's connection read here (amqplib 2.x: `recvFrame`, `rest`, `maxFrameSize`, `stream`, `recvSinceLastCheck`). */
interface FrameReading {
  recvFrame: () => unknown;
  rest: Buffer;
  maxFrameSize: number;
  stream: { read: () => Buffer | null };
  recvSinceLastCheck: boolean;
}

const FRAME_HEADER = 2;
const FRAME_END = 206;
/** type (1), channel (2), size (4) */
const FRAME_PREFIX = 7;
const EMPTY: Buffer = Buffer.alloc(0);

/** A content header frame read by the caller: what amqplib's decoding would have given, or undefined to leave it to amqplib. */
export type HeaderReader = (payload: Buffer, channel: number) => object | undefined;

/**
 * Takes over `connection`'s gathering of frame bytes (and its content header frames when `header` is given). Returns
 * false, changing nothing, when the connection is not the amqplib it knows: then amqplib reads as always.
 */
export function readFramesWithoutCopies(connection: unknown, header?: HeaderReader): boolean {
  const conn = connection as Partial<FrameReading> | undefined;
  if (
    !conn ||
    typeof conn.recvFrame !== 'function' ||
    !Buffer.isBuffer(conn.rest) ||
    typeof conn.maxFrameSize !== 'number' ||
    typeof conn.stream?.read !== 'function'
  ) {
    return false;
  }
  const amqplibFrame = conn.recvFrame;
  /** bytes of the last read past the frame it completed: used before the next read */
  let pending: Buffer = EMPTY;

  /** The next bytes: what is left of the last read, else a new read (null when the socket has nothing more yet). */
  const next = (self: FrameReading): Buffer | null => {
    if (pending.length > 0) {
      const more = pending;
      pending = EMPTY;
      return more;
    }
    const read = self.stream.read();
    if (read !== null) self.recvSinceLastCheck = true;
    return read;
  };

  /** Makes `rest` begin with a whole frame (or one amqplib will refuse); false when the socket has nothing more yet. */
  const gather = (self: FrameReading): boolean => {
    let rest = self.rest;
    for (;;) {
      let lacking: number;
      if (rest.length >= FRAME_PREFIX) {
        const size = rest.readUInt32BE(3);
        // Too big: amqplib says so (its frameError closes the connection).
        if (self.maxFrameSize > 0 && size > self.maxFrameSize) return true;
        lacking = FRAME_PREFIX + size + 1 - rest.length;
        if (lacking <= 0) return true;
      } else if (rest.length === 0) {
        const more = next(self);
        if (more === null) return false;
        // Nothing was left over: the read is used as it is.
        self.rest = rest = more;
        continue;
      } else lacking = FRAME_PREFIX - rest.length;
      // Only the bytes lacking are joined to what is there, in one copy however many reads bring them; the rest of
      // the last read waits its turn.
      const pieces: Buffer[] = [rest];
      while (lacking > 0) {
        let more = next(self);
        if (more === null) {
          if (pieces.length > 1) self.rest = Buffer.concat(pieces);
          return false;
        }
        if (more.length > lacking) {
          pending = more.subarray(lacking);
          more = more.subarray(0, lacking);
        }
        pieces.push(more);
        lacking -= more.length;
      }
      self.rest = rest = Buffer.concat(pieces);
    }
  };

  conn.recvFrame = function recvFrame(this: FrameReading) {
    if (!gather(this)) return false;
    const rest = this.rest;
    if (header !== undefined && rest[0] === FRAME_HEADER) {
      const size = rest.readUInt32BE(3);
      if ((this.maxFrameSize === 0 || size <= this.maxFrameSize) && rest.length >= FRAME_PREFIX + size + 1 && rest[FRAME_PREFIX + size] === FRAME_END) {
        const frame = header(rest.subarray(FRAME_PREFIX, FRAME_PREFIX + size), rest.readUInt16BE(1));
        if (frame !== undefined) {
          this.rest = rest.subarray(FRAME_PREFIX + size + 1);
          return frame;
        }
      }
    }
    // A whole frame is there: amqplib parses and decodes it without reading.
    return amqplibFrame.call(this);
  };
  return true;
}
