/** Browser mode: serves the built renderer and carries the contract over a WebSocket on 127.0.0.1, guarded by Host, Origin and a per-run token. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { z } from 'zod';
import { eventNames, type EventName, type Events, type Handlers } from '../shared/contract';
import type { ErrorShape } from '../shared/errors';
import type { TraceStep } from '../shared/trace';
import { WS_PATH, type EventFrameOf, type HostFrame, type ReceivedInvokeFrame } from '../shared/ws-frames';
import { dispatch } from '../core/dispatch';

export interface HostOptions {
  /** the built renderer (out/renderer) */
  staticDir: string;
  port?: number;
  /** defaults to a random one; it lives as long as this host (one run), it is not one-time */
  token?: string;
  /** the largest contract frame accepted (default 80 MiB); bigger ones close the socket with 1009 */
  maxFrameBytes?: number;
  /** bytes queued for a page past which its trace steps are skipped until it catches up (default 16 MiB) */
  behindBytes?: number;
  /** steps per `trace.store.reset` piece when a page that fell behind is sent the whole trace again (default 2000) */
  resetPieceSteps?: number;
  /** told about anything that went wrong inside the host without taking it down (default: nothing) */
  onProblem?: (sentence: string) => void;
}

export interface Host {
  url: string;
  origin: string;
  token: string;
  /** sends an event to every connected page */
  broadcast: <E extends EventName>(name: E, payload: Events[E]) => void;
  close: () => Promise<void>;
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

const frameSchema: z.ZodType<ReceivedInvokeFrame> = z.object({ type: z.literal('invoke'), id: z.number().int(), command: z.string().max(200), args: z.unknown() });

/** The same policy as the Electron window: nothing inline, nothing from elsewhere. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** A contract frame can carry a 1 MiB request or a whole trace export; anything bigger is refused by `ws` (close 1009). */
const MAX_FRAME_BYTES = 80 * 1024 * 1024;

/** A page this far behind (bytes the host queued for it) is sent no more trace steps until it catches up. */
const BEHIND_BYTES = 16 * 1024 * 1024;
/** How often a page that fell behind is checked for having caught up (when no new step would check it). */
const BEHIND_CHECK_MS = 250;
/** Steps per piece of a page's catch-up (about 1 MiB of JSON each at the trace's usual step sizes). */
const RESET_PIECE_STEPS = 2000;
/** Rounds of a catch-up that wait for each piece before the steps traced meanwhile go out without waiting. */
const RESET_ROUNDS = 3;

function sameToken(given: string | null, token: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A refusal, as an HTTP status and the one sentence that explains it. */
interface Refusal {
  status: number;
  sentence: string;
}

const statusTexts: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  421: 'Misdirected Request',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
};

/** Writes a whole HTTP answer on a raw socket (upgrades and parse errors never get a ServerResponse). */
function answerOnSocket(socket: Duplex, refusal: Refusal): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${refusal.sentence}\n`;
  socket.end(
    `HTTP/1.1 ${refusal.status} ${statusTexts[refusal.status] ?? 'Error'}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

function answer(response: ServerResponse, refusal: Refusal, extraHeaders: Record<string, string> = {}): void {
  // Half an answer already went out: the only honest thing left is to cut the connection.
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(refusal.status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', ...extraHeaders });
  response.end(`${refusal.sentence}\n`);
}

export async function startHost(handlers: Handlers, options: HostOptions): Promise<Host> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const root = normalize(options.staticDir);
  const onProblem = options.onProblem ?? (() => undefined);
  // Known once the server listens; no request can arrive before that.
  let allowedHosts = new Set<string>();
  let allowedOrigins = new Set<string>();
  let origin = '';

  /** DNS rebinding defence: a page from another site that resolves its name to 127.0.0.1 still sends its own Host. */
  const hostRefusal = (request: IncomingMessage): Refusal | undefined => {
    const hostHeader = request.headers.host?.toLowerCase();
    if (hostHeader !== undefined && allowedHosts.has(hostHeader)) return undefined;
    return { status: 421, sentence: `This BridgeScope host answers only to ${[...allowedHosts].join(' and ')}: open the URL that \`bridgescope ui\` printed.` };
  };

  const pathOf = (request: IncomingMessage): string | Refusal => {
    let pathname: string;
    let path: string;
    try {
      pathname = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
      path = decodeURIComponent(pathname);
    } catch {
      return { status: 400, sentence: 'That path is not a valid URL path (bad percent-encoding?).' };
    }
    if (path.includes('\0')) return { status: 400, sentence: 'That path contains a NUL character.' };
    return path;
  };

  const serveStatic = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const refusedHost = hostRefusal(request);
    if (refusedHost) return answer(response, refusedHost);
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return answer(response, { status: 405, sentence: 'Only GET and HEAD are served here; the contract goes over the WebSocket.' }, { allow: 'GET, HEAD' });
    }
    const path = pathOf(request);
    if (typeof path !== 'string') return answer(response, path);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep) && file !== root) return answer(response, { status: 403, sentence: 'That path is outside the inspector.' });
    let body: Buffer;
    try {
      if (!(await stat(file)).isFile()) throw new Error('not a file');
      body = await readFile(file);
    } catch {
      return answer(response, { status: 404, sentence: 'Not found. Was the renderer built (npm run build)?' });
    }
    response.writeHead(200, {
      'content-type': contentTypes[extname(file)] ?? 'application/octet-stream',
      'content-length': body.length,
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    });
    response.end(request.method === 'HEAD' ? undefined : body);
  };

  const server: Server = createServer((request, response) => {
    serveStatic(request, response).catch((err: unknown) => {
      // JSON-quoted: a request's bytes must not reach the user's terminal as escape sequences.
      onProblem(`The browser host could not answer ${JSON.stringify(`${String(request.method)} ${String(request.url)}`.slice(0, 200))}: ${(err as Error)?.message ?? String(err)}`);
      try {
        answer(response, { status: 500, sentence: 'The BridgeScope host could not answer that request.' });
      } catch {
        response.destroy();
      }
    });
  });
  // Slow or half-sent requests must not pin sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // Requests Node cannot even parse (bad request line, absurd or oversized headers) get one sentence, never a crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
      socket.destroy();
      return;
    }
    if (err.code === 'HPE_HEADER_OVERFLOW') answerOnSocket(socket, { status: 431, sentence: 'The request headers are too large.' });
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') answerOnSocket(socket, { status: 408, sentence: 'The request took too long to arrive.' });
    else answerOnSocket(socket, { status: 400, sentence: 'That is not a request this host understands.' });
  });

  const sockets = new Set<WebSocket>();
  /** pages whose trace steps are being skipped until they catch up (see keepsUp) */
  /** Pages that fell behind, each watched until it has read what waited (then it is sent the whole trace again). */
  const behind = new Map<WebSocket, NodeJS.Timeout>();
  const behindBytes = options.behindBytes ?? BEHIND_BYTES;
  /** Pages being sent the whole trace again, piece by piece: live steps are not sent to them meanwhile. */
  const catchingUp = new Set<WebSocket>();
  /** each page's latest catch-up: an older one (ended by a plain reset, or overtaken) stops at its next step */
  const generations = new WeakMap<WebSocket, number>();
  const resetPieceSteps = options.resetPieceSteps ?? RESET_PIECE_STEPS;
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxFrameBytes ?? MAX_FRAME_BYTES });

  /** Why this upgrade gets no socket, if it does not. */
  const upgradeRefusal = (request: IncomingMessage): Refusal | undefined => {
    const refusedHost = hostRefusal(request);
    if (refusedHost) return refusedHost;
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== WS_PATH) return { status: 404, sentence: `The contract socket is at ${WS_PATH}.` };
    // Another origin (a page the user happens to visit) never gets a socket.
    if (request.headers.origin === undefined || !allowedOrigins.has(request.headers.origin)) {
      return { status: 403, sentence: `Only the inspector page itself (${[...allowedOrigins].join(' or ')}) may open this socket.` };
    }
    if (!sameToken(url.searchParams.get('token'), token)) {
      return { status: 403, sentence: 'The token is missing or wrong: open the URL that `bridgescope ui` printed for this run.' };
    }
    return undefined;
  };

  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands the raw socket over without an error listener: a reset here would otherwise be an uncaught 'error'.
    socket.on('error', () => socket.destroy());
    try {
      const refusal = upgradeRefusal(request);
      if (refusal) {
        answerOnSocket(socket, refusal);
        return;
      }
      wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
    } catch (err) {
      onProblem(`The browser host refused a broken WebSocket upgrade: ${(err as Error)?.message ?? String(err)}`);
      answerOnSocket(socket, { status: 400, sentence: 'That WebSocket upgrade could not be understood.' });
    }
  });

  /** Sends one frame; a value that cannot become JSON or a socket already gone is reported, never thrown. */
  const send = (ws: WebSocket, frame: HostFrame): boolean => {
    if (ws.readyState !== ws.OPEN) return false;
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      onProblem(`A frame could not be turned into JSON: ${(err as Error)?.message ?? String(err)}`);
      return false;
    }
    ws.send(text, () => undefined);
    return true;
  };

  const sendError = (ws: WebSocket, id: number | undefined, error: ErrorShape): void => {
    // A frame with a usable id gets its reply (the page waits for it); anything else gets a plain error frame.
    send(ws, id === undefined ? { type: 'error', error } : { type: 'reply', id, ok: false, error });
  };

  const onFrame = (ws: WebSocket, data: RawData, isBinary: boolean): void => {
    if (isBinary) {
      sendError(ws, undefined, { code: 'bad-input', message: 'Binary frames are not part of the contract: send one JSON invoke per text frame.' });
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      sendError(ws, undefined, { code: 'bad-input', message: 'That frame is not JSON: send one JSON invoke per text frame.' });
      return;
    }
    const parsed = frameSchema.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { id?: unknown } | null)?.id;
      sendError(ws, Number.isSafeInteger(id) ? (id as number) : undefined, { code: 'bad-input', message: 'That frame is not a BridgeScope invoke ({type: "invoke", id, command, args}).' });
      return;
    }
    const frame = parsed.data;
    dispatch(handlers, frame.command, frame.args)
      .then((reply) => {
        if (!send(ws, { type: 'reply', id: frame.id, ...reply }) && ws.readyState === ws.OPEN) {
          sendError(ws, frame.id, { code: 'internal', message: `The result of ${frame.command} could not be sent as JSON.` });
        }
      })
      .catch((err: unknown) => {
        onProblem(`${frame.command} failed inside the host: ${(err as Error)?.message ?? String(err)}`);
        sendError(ws, frame.id, { code: 'internal', message: `${frame.command} failed inside the BridgeScope host.` });
      });
  };

  wss.on('connection', (ws: WebSocket) => {
    sockets.add(ws);
    ws.on('close', () => {
      sockets.delete(ws);
      clearInterval(behind.get(ws));
      behind.delete(ws);
    });
    // Oversized frames, bad opcodes and resets end up here; `ws` closes the socket itself.
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => {
      try {
        onFrame(ws, data, isBinary);
      } catch (err) {
        onProblem(`A frame could not be handled: ${(err as Error)?.message ?? String(err)}`);
        sendError(ws, undefined, { code: 'internal', message: 'That frame could not be handled.' });
      }
    });
  });
  wss.on('error', (err) => onProblem(`The browser host's WebSocket server failed: ${err.message}`));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => onProblem(`The browser host failed: ${err.message}`));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  origin = `http://127.0.0.1:${address.port}`;
  allowedHosts = new Set([`127.0.0.1:${address.port}`, `localhost:${address.port}`]);
  allowedOrigins = new Set([origin, `http://localhost:${address.port}`]);

  /**
   * Whether a page reads its trace steps fast enough to be sent more. A page that stops reading (a frozen tab, a slow
   * link) would otherwise make the host queue every step for it: past BEHIND_BYTES waiting, its steps are skipped; once it
   * has read what waited, it gets the whole trace again (`trace.store.reset`: the page drops what the snapshot repeats).
   */
  function keepsUp(ws: WebSocket): boolean {
    if (catchingUp.has(ws)) return false;
    if (ws.bufferedAmount > behindBytes) {
      fellBehind(ws);
      return false;
    }
    if (!behind.has(ws)) return true;
    if (ws.bufferedAmount > 0) return false;
    resync(ws);
    return false;
  }

  /**
   * Watches a page that fell behind: if tracing goes quiet after the burst, no further step would find it caught up, so
   * it is checked on its own until it has read what waited. The watch never keeps the process alive.
   */
  function fellBehind(ws: WebSocket): void {
    if (behind.has(ws)) return;
    const watch = setInterval(() => {
      if (ws.readyState !== ws.OPEN) {
        clearInterval(watch);
        behind.delete(ws);
      } else if (ws.bufferedAmount === 0) resync(ws);
    }, BEHIND_CHECK_MS);
    watch.unref();
    behind.set(ws, watch);
  }

  /** Sends a page that caught up the whole trace (`trace.store.reset`) in place of the steps it was not sent. */
  function resync(ws: WebSocket): void {
    clearInterval(behind.get(ws));
    behind.delete(ws);
    catchingUp.add(ws);
    void sendWholeTrace(ws).catch((err: unknown) => {
      catchingUp.delete(ws);
      onProblem(`A page that fell behind could not be sent the trace again: ${(err as Error)?.message ?? String(err)}`);
    });
  }

  /**
   * The whole trace as `trace.store.reset` pieces of at most `resetPieceSteps` steps, each sent once the one before it
   * left the process: the host never holds more than one piece's JSON (one frame of the whole trace was tens of MiB at
   * the caps, a spike in the host's memory). Steps traced meanwhile are not sent to this page as they come; they follow
   * in more pieces, read from the store again until none is new (or, after RESET_ROUNDS rounds, sent at once), and
   * live steps flow again in that same turn. A plain reset broadcast meanwhile ends it (see `generations`).
   */
  async function sendWholeTrace(ws: WebSocket): Promise<void> {
    const send = (steps: TraceStep[], piece: 'first' | 'middle' | 'last' | undefined): Promise<void> =>
      new Promise((resolve) => {
        const frame: EventFrameOf<'trace.store.reset'> = { type: 'event', name: 'trace.store.reset', payload: piece ? { steps, piece } : { steps } };
        // Called once the frame was handed to the socket, or with the error that closed it.
        ws.send(JSON.stringify(frame), () => resolve());
      });
    // A plain reset broadcast meanwhile (a Clear, an import) replaces the page's trace: this catch-up then ends.
    const generation = (generations.get(ws) ?? 0) + 1;
    generations.set(ws, generation);
    const current = (): boolean => ws.readyState === ws.OPEN && generations.get(ws) === generation;
    try {
      let { steps } = await handlers['trace.snapshot.get']({});
      if (!current()) return;
      // Not awaited: live steps follow it from this same turn on.
      if (steps.length <= resetPieceSteps) {
        void send(steps, undefined);
        return;
      }
      let sentThrough = 0;
      let first = true;
      // Under a steady stream each re-read finds new steps: after a few rounds, what is new goes out without waiting
      // (one round's worth queued at most) and live steps flow again.
      for (let round = 0; ; round += 1) {
        const final = round >= RESET_ROUNDS;
        for (let at = 0; at < steps.length && current(); at += resetPieceSteps) {
          const piece = steps.slice(at, at + resetPieceSteps);
          for (const step of piece) if (step.seq > sentThrough) sentThrough = step.seq;
          const sent = send(piece, first ? 'first' : 'middle');
          first = false;
          if (!final) await sent;
        }
        if (!current()) return;
        if (final) break;
        const through = sentThrough;
        steps = (await handlers['trace.snapshot.get']({})).steps.filter((step) => step.seq > through);
        if (!current()) return;
        if (steps.length === 0) break;
      }
      void send([], 'last');
    } finally {
      if (generations.get(ws) === generation) catchingUp.delete(ws);
    }
  }

  return {
    origin,
    token,
    url: `${origin}/?token=${token}`,
    broadcast(name, payload) {
      if (!(eventNames as readonly string[]).includes(name)) return;
      let text: string;
      try {
        const frame: EventFrameOf<typeof name> = { type: 'event', name, payload };
        text = JSON.stringify(frame);
      } catch (err) {
        onProblem(`The ${name} event could not be turned into JSON: ${(err as Error)?.message ?? String(err)}`);
        return;
      }
      for (const ws of sockets) {
        if (ws.readyState !== ws.OPEN) continue;
        if (name === 'trace.steps.added' && !keepsUp(ws)) continue;
        // A plain reset (a Clear, an import) is the page's whole trace: a catch-up under way for it ends here.
        if (name === 'trace.store.reset' && catchingUp.has(ws)) {
          generations.set(ws, (generations.get(ws) ?? 0) + 1);
          catchingUp.delete(ws);
        }
        ws.send(text, () => undefined);
      }
    },
    async close() {
      for (const watch of behind.values()) clearInterval(watch);
      behind.clear();
      for (const ws of sockets) ws.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections of the page would otherwise hold close() open.
      server.closeAllConnections();
      await closed;
    },
  };
}
