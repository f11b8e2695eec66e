/**
 * A bounded memory of what became of the last ids: how the RPC client's calls ended (a duplicate reply told from a late
 * one), which watched requests were answered (a second reply told from a first). At least the last `limit`, at most
 * twice that: two generations of plain Maps, the older dropped whole when the newer is full. No per-entry eviction on the
 * hot path (a BoundedMap's delete and order array cost about 4 us per call here once full).
 */
export class RecentIds<T = 'replied' | 'failed'> {
  private current = new Map<string, T>();
  private previous = new Map<string, T>();

  constructor(private readonly limit: number) {}

  set(id: string, outcome: T): void {
    if (this.current.size >= this.limit) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(id, outcome);
  }

  delete(id: string): void {
    this.current.delete(id);
    this.previous.delete(id);
  }

  get(id: string): T | undefined {
    return this.current.get(id) ?? this.previous.get(id);
  }
}
