/** A Map that keeps at most `limit` entries, evicting the oldest in O(1) (a Map's first key gets slow after many deletes). */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  private order: K[] = [];
  private head = 0;

  constructor(
    private readonly limit: number,
    private readonly onEvict?: (key: K, value: V) => void,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    if (!this.map.has(key)) this.add(key, value);
    else this.map.set(key, value);
  }

  /** As `set`, for a key the caller knows is not there (it just missed a `get`): one lookup less. */
  add(key: K, value: V): void {
    if (this.map.size >= this.limit) this.evictOldest();
    this.order.push(key);
    this.map.set(key, value);
  }

  delete(key: K): boolean {
    // The key stays in `order` and is skipped when its turn to be evicted comes; a map that is never full (keys added and
    // deleted as they go) would keep every deleted key there, so `order` is rebuilt once it is mostly deleted keys.
    const deleted = this.map.delete(key);
    if (deleted && this.order.length - this.head > 2 * this.map.size + 1024) {
      this.order = [...this.map.keys()];
      this.head = 0;
    }
    return deleted;
  }

  clear(): void {
    this.map.clear();
    this.order = [];
    this.head = 0;
  }

  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  private evictOldest(): void {
    while (this.head < this.order.length) {
      const key = this.order[this.head] as K;
      this.head += 1;
      const value = this.map.get(key);
      if (value !== undefined || this.map.has(key)) {
        this.map.delete(key);
        this.onEvict?.(key, value as V);
        break;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
