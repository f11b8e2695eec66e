/** Whether the page reaches the BridgeScope host; no DOM here, so Node tools (bench/renderer-scale.ts) can load the stores. */
/** up or down since when; the Electron bridge is in-process and always up */
export type HostLinkState = { state: 'up' } | { state: 'down'; since: number; attempts: number };

/** A transport that can lose the host: says when it did and when it is back. */
export interface HostLink {
  hostLink(): HostLinkState;
  /** called on every change; returns the unsubscribe */
  onHostLink(listener: (state: HostLinkState) => void): () => void;
}

export function hasHostLink(client: object): client is HostLink {
  return typeof (client as Partial<HostLink>).onHostLink === 'function';
}

/** How long to wait before the next attempt to reach a host that went away: 1 s, then up to 5 s. */
export function reconnectDelayMs(attempts: number): number {
  return Math.min(5000, 1000 * Math.max(1, attempts));
}
