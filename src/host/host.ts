/** Browser mode: serves the built renderer and carries the contract over a WebSocket on 127.0.0.1, guarded by a token. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { eventNames, type EventName, type Events, type Handlers } from '../shared/contract';
import { dispatch } from '../core/dispatch';

export interface HostOptions {
  /** the built renderer (out/renderer) */
  staticDir: string;
  port?: number;
  token?: string;
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

const frameSchema = z.object({ type: z.literal('invoke'), id: z.number().int(), command: z.string().max(200), args: z.unknown() });

/** The same policy as the Electron window: nothing inline, nothing from elsewhere. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

function sameToken(given: string | null, token: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startHost(handlers: Handlers, options: HostOptions): Promise<Host> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const root = normalize(options.staticDir);

  const serveStatic = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep) && file !== root) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, {
        'content-type': contentTypes[extname(file)] ?? 'application/octet-stream',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      });
      response.end(body);
    } catch {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found. Was the renderer built (npm run build)?');
    }
  };

  const server: Server = createServer((request, response) => void serveStatic(request, response));
  const sockets = new Set<WebSocket>();
  let origin = '';
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 80 * 1024 * 1024,
  });

  server.on('upgrade', (request, socket, head) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    // Another origin (a page the user happens to visit) or a missing token never gets a socket.
    if (url.pathname !== '/ws' || request.headers.origin !== origin || !sameToken(url.searchParams.get('token'), token)) {
      socket.write('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
  });

  wss.on('connection', (ws: WebSocket) => {
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      let frame: z.infer<typeof frameSchema>;
      try {
        frame = frameSchema.parse(JSON.parse(data.toString()));
      } catch {
        ws.send(JSON.stringify({ type: 'error', error: { code: 'bad-input', message: 'That frame is not a BridgeScope invoke.' } }));
        return;
      }
      void dispatch(handlers, frame.command, frame.args).then((reply) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'reply', id: frame.id, ...reply }));
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  origin = `http://127.0.0.1:${address.port}`;

  return {
    origin,
    token,
    url: `${origin}/?token=${token}`,
    broadcast(name, payload) {
      if (!(eventNames as readonly string[]).includes(name)) return;
      const frame = JSON.stringify({ type: 'event', name, payload });
      for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(frame);
    },
    async close() {
      for (const ws of sockets) ws.terminate();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
