/**
 * One copy of the strings a trace keeps on step after step: the firehose's node, connection, user, exchange, queue and
 * routing-key names. Every trace message decodes them afresh; a store of 10,000 traced RPCs then held tens of thousands
 * of equal strings. Bounded: the table starts over when full, so a string
 * that never comes back (an id) costs one entry for a while, never memory for good.
 */
export class Interner {
  private table = new Map<string, string>();

  constructor(
    private readonly limit = 4096,
    /** longer strings are kept as they are (hashing them would cost more than the copy) */
    private readonly maxLength = 4096,
  ) {}

  of(text: string): string {
    if (text.length > this.maxLength) return text;
    const known = this.table.get(text);
    if (known !== undefined) return known;
    if (this.table.size >= this.limit) this.table = new Map();
    this.table.set(text, text);
    return text;
  }
}

/** The firehose's names (short, repeated across RPCs). */
export const traceNames = new Interner(4096, 256);
