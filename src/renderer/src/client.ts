/** Picks the transport once at start-up: the Electron bridge when the preload exposed it, the WebSocket host otherwise. */
import type { BridgeClient, CommandArgs, CommandName, CommandResult, EventName, Events, InvokeReply } from '../../shared/contract';
import type { ErrorShape } from '../../shared/errors';
import { WS_PATH, type HostFrame, type InvokeFrame } from '../../shared/ws-frames';
import { reconnectDelayMs, type HostLink, type HostLinkState } from './host-link';

export { hasHostLink, type HostLink, type HostLinkState } from './host-link';

/** An error that crossed the boundary as data: a code and one sentence. */
export class BackendError extends Error {
  readonly code: ErrorShape['code'];
  /** a failed RPC's id and verdict, when the error is one */
  readonly rpcId: ErrorShape['rpcId'];
  readonly verdict: ErrorShape['verdict'];
  constructor(shape: ErrorShape) {
    super(shape.message);
    this.code = shape.code;
    this.rpcId = shape.rpcId;
    this.verdict = shape.verdict;
  }
}

interface PreloadBridge {
  invoke(name: CommandName, args: unknown): Promise<InvokeReply<CommandName>>;
  on(name: EventName, listener: (payload: unknown) => void): () => void;
}

function unwrap<K extends CommandName>(reply: InvokeReply<K>): CommandResult<K> {
  if (reply.ok) return reply.result;
  throw new BackendError(reply.error);
}

export function ipcClient(bridge: PreloadBridge): BridgeClient {
  return {
    async invoke(name, args) {
      return unwrap(await bridge.invoke(name, args)) as never;
    },
    on(name, listener) {
      return bridge.on(name, listener as (payload: unknown) => void);
    },
  };
}

type Listener = (payload: unknown) => void;

/** The browser transport: one WebSocket, invokes matched to replies by id, events fanned out to listeners; reconnects after the host went away. */
export function webSocketClient(url: string, WebSocketImpl: typeof WebSocket = WebSocket): BridgeClient & HostLink {
  let nextId = 0;
  const waiting = new Map<number, { resolve: (reply: InvokeReply<CommandName>) => void }>();
  const listeners = new Map<string, Set<Listener>>();
  const linkListeners = new Set<(state: HostLinkState) => void>();
  let link: HostLinkState = { state: 'up' };
  let socket: WebSocket | undefined;
  let opened: Promise<WebSocket> | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;

  const setLink = (next: HostLinkState): void => {
    link = next;
    for (const listener of linkListeners) listener(next);
  };

  // Once the host went away, keep trying on a timer; events resume by themselves since the host sends them to every page.
  const scheduleRetry = (): void => {
    if (retry !== undefined || link.state !== 'down') return;
    retry = setTimeout(() => {
      retry = undefined;
      void connect().catch(() => undefined);
    }, reconnectDelayMs(link.attempts));
  };

  const connect = (): Promise<WebSocket> => {
    opened ??= new Promise((resolve, reject) => {
      const ws = new WebSocketImpl(url);
      let wasOpen = false;
      ws.onopen = () => {
        wasOpen = true;
        socket = ws;
        if (link.state === 'down') setLink({ state: 'up' });
        resolve(ws);
      };
      ws.onerror = () => reject(new BackendError({ code: 'unreachable', message: 'Cannot reach the BridgeScope host (is `npm run web` still running, and is the token in the URL right?).' }));
      ws.onclose = () => {
        socket = undefined;
        opened = undefined;
        for (const [id, waiter] of waiting) {
          waiter.resolve({ ok: false, error: { code: 'unreachable', message: 'The connection to the BridgeScope host closed.' } });
          waiting.delete(id);
        }
        // A page that never reached the host says so once, in its loading error; one that had it keeps trying.
        if (wasOpen || link.state === 'down') {
          setLink({ state: 'down', since: link.state === 'down' ? link.since : Date.now(), attempts: link.state === 'down' ? link.attempts + 1 : 0 });
          scheduleRetry();
        }
      };
      ws.onmessage = (message: MessageEvent<string>) => {
        // The host is ours and speaks only these frames; an error frame answers nothing the page waits for.
        const frame = JSON.parse(message.data) as HostFrame;
        if (frame.type === 'reply') {
          waiting.get(frame.id)?.resolve(frame);
          waiting.delete(frame.id);
        } else if (frame.type === 'event') {
          for (const listener of listeners.get(frame.name) ?? []) listener(frame.payload);
        }
      };
    });
    return opened;
  };

  return {
    async invoke<K extends CommandName>(name: K, args: CommandArgs<K>): Promise<CommandResult<K>> {
      const ws = socket ?? (await connect());
      nextId += 1;
      const id = nextId;
      const reply = new Promise<InvokeReply<CommandName>>((resolve) => waiting.set(id, { resolve }));
      const frame: InvokeFrame<K> = { type: 'invoke', id, command: name, args };
      ws.send(JSON.stringify(frame));
      return unwrap(await reply) as CommandResult<K>;
    },
    on<E extends EventName>(name: E, listener: (payload: Events[E]) => void): () => void {
      void connect().catch(() => undefined);
      const set = listeners.get(name) ?? new Set<Listener>();
      set.add(listener as Listener);
      listeners.set(name, set);
      return () => void set.delete(listener as Listener);
    },
    hostLink: () => link,
    onHostLink(listener) {
      linkListeners.add(listener);
      return () => void linkListeners.delete(listener);
    },
  };
}

export function createBridgeClient(): BridgeClient {
  const bridge = (window as unknown as { bridgescope?: PreloadBridge }).bridgescope;
  if (bridge) return ipcClient(bridge);
  const token = new URLSearchParams(window.location.search).get('token') ?? '';
  const url = `${window.location.protocol === 'https:' ? 'wss' : 'ws'}://${window.location.host}${WS_PATH}?token=${encodeURIComponent(token)}`;
  return webSocketClient(url);
}
