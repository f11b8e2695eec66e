import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { IClientOptions } from 'mqtt';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttLink, pointAt, validateMqttUrl } from '../../src/core/links/mqtt-link';
import { testConnection } from '../../src/core/connection-test';
import type { ConnectionProfile } from '../../src/shared/contract';

interface Seen {
  /** the WebSocket path or the TLS server name each connection came with */
  arrivals: string[];
  /** user names in the CONNECT packets */
  users: Array<string | undefined>;
}

/** Speaks just enough MQTT 3.1.1 on a stream: CONNACK to CONNECT; `dropAfterConnack` closes right after it. */
function serveMqtt(stream: Duplex, seen: Seen, dropAfterConnack: boolean): void {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  stream.on('error', () => undefined);
  parser.on('packet', (packet: Packet) => {
    if (packet.cmd === 'connect') {
      seen.users.push(packet.username);
      stream.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      if (dropAfterConnack) setImmediate(() => stream.destroy());
    }
    if (packet.cmd === 'pingreq') stream.write(mqttPacket.generate({ cmd: 'pingresp' }));
  });
  stream.on('data', (chunk: Buffer) => parser.parse(chunk));
}

async function listen(server: HttpServer | TlsServer, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

/** An MQTT-over-WebSocket node that records each connection's path. */
async function wsNode(dropAfterConnack: boolean): Promise<{ port: number; seen: Seen; close: () => Promise<void> }> {
  const seen: Seen = { arrivals: [], users: [] };
  const http = createHttpServer();
  const wss = new WebSocketServer({ server: http });
  wss.on('connection', (socket, request) => {
    seen.arrivals.push(request.url ?? '');
    serveMqtt(createWebSocketStream(socket), seen, dropAfterConnack);
  });
  const port = await listen(http);
  return { port, seen, close: () => new Promise<void>((resolve) => (wss.close(), http.closeAllConnections(), http.close(() => resolve()))) };
}

let certDir = '';
let cert: Buffer;
let key: Buffer;

/** An MQTT-over-TLS node that records each connection's server name (SNI), '' when none was sent. */
async function tlsNode(dropAfterConnack: boolean, host = '127.0.0.1'): Promise<{ port: number; seen: Seen; close: () => Promise<void> }> {
  const seen: Seen = { arrivals: [], users: [] };
  const server = createTlsServer({ cert, key }, (socket: TLSSocket) => {
    seen.arrivals.push(typeof socket.servername === 'string' ? socket.servername : '');
    serveMqtt(socket, seen, dropAfterConnack);
  });
  const port = await listen(server, host);
  return { port, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'bridgescope-tls-'));
  // A throwaway self-signed certificate for localhost and 127.0.0.1, made for this run.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'),
  ], { stdio: 'ignore' });
  cert = readFileSync(join(certDir, 'cert.pem'));
  key = readFileSync(join(certDir, 'key.pem'));
});

afterAll(() => {
  rmSync(certDir, { recursive: true, force: true });
});

/** Resolves when the link's status is `state` with currentUrl `url`. */
function connectedTo(link: MqttLink, url: string): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (link.status.state === 'connected' && link.currentUrl === url) {
        link.off('status', check);
        resolve();
      }
    };
    link.on('status', check);
  });
}

describe('MQTT failover to the next URL of a list', () => {
  it('connects a WebSocket fallback with its own path and credentials, not the first URL\'s', async () => {
    const first = await wsNode(true);
    const second = await wsNode(false);
    const firstUrl = `ws://alice:a-pass@127.0.0.1:${first.port}/first`;
    const secondUrl = `ws://bob:b-pass@127.0.0.1:${second.port}/second?x=1`;
    const link = new MqttLink({ url: firstUrl, fallbackUrls: [secondUrl], clientId: 'failover-ws', reconnectDelayMs: 20, connectTimeoutMs: 2000 });
    try {
      const moved = connectedTo(link, secondUrl);
      await link.open();
      await moved;
      expect(first.seen.arrivals[0]).toBe('/first');
      expect(second.seen.arrivals).toEqual(['/second?x=1']);
      expect(second.seen.users).toEqual(['bob']);
    } finally {
      await link.close();
      await Promise.all([first.close(), second.close()]);
    }
  });

  it('connects a TLS fallback with its own server name: none for an IP address, not the first host\'s', async () => {
    const first = await tlsNode(true, 'localhost');
    const second = await tlsNode(false);
    const firstUrl = `mqtts://localhost:${first.port}`;
    const secondUrl = `mqtts://127.0.0.1:${second.port}`;
    const link = new MqttLink({ url: firstUrl, fallbackUrls: [secondUrl], clientId: 'failover-tls', reconnectDelayMs: 20, connectTimeoutMs: 2000 });
    link.useDetails({ tls: { ca: cert, rejectUnauthorized: true } });
    try {
      const moved = connectedTo(link, secondUrl);
      await link.open();
      await moved;
      expect(first.seen.arrivals[0]).toBe('localhost');
      // mqtt.js kept "localhost" here before: the certificate check and SNI routing used the wrong host.
      expect(second.seen.arrivals).toEqual(['']);
    } finally {
      await link.close();
      await Promise.all([first.close(), second.close()]);
    }
  });

  it('points mqtt.js options at a URL: scheme, host, port, path, server name recomputed, credentials of that URL', () => {
    const options: IClientOptions = { protocol: 'wss', host: 'a.example', hostname: 'a.example', port: 443, path: '/a', servername: 'a.example', username: 'u', password: 'p' };
    pointAt(options, validateMqttUrl('mqtts://[::1]:8883'));
    expect(options).toMatchObject({ protocol: 'mqtts', host: '::1', hostname: '::1', port: 8883 });
    expect(options).not.toHaveProperty('path');
    expect(options).not.toHaveProperty('servername');
    expect(options).not.toHaveProperty('username');
    pointAt(options, validateMqttUrl('ws://me:secret@b.example/mqtt'));
    expect(options).toMatchObject({ protocol: 'ws', hostname: 'b.example', port: 80, path: '/mqtt', username: 'me', password: 'secret' });
  });
});

describe('Test connection over TLS', () => {
  const profile = (mqttUrl: string, tls: ConnectionProfile['tls']): ConnectionProfile => ({
    name: 'tls',
    amqpUrl: 'amqp://127.0.0.1:1/',
    mqttUrl,
    managementUrl: 'http://127.0.0.1:1',
    vhost: '/',
    exchange: 'amq.direct',
    ...(tls ? { tls } : {}),
  });

  it('says the certificate was verified with the CA file, not verified with verification off, and why it failed without either', async () => {
    const node = await tlsNode(false, 'localhost');
    const url = `mqtts://localhost:${node.port}`;
    try {
      const [, withCa] = await testConnection(profile(url, { caFile: join(certDir, 'cert.pem') }));
      expect(withCa).toMatchObject({ protocol: 'mqtt', ok: true, tls: 'verified', sentence: 'Reached and signed in; MQTT 3.1.1 accepted, certificate verified.' });
      const [, unverified] = await testConnection(profile(url, { verify: false }));
      expect(unverified).toMatchObject({ ok: true, tls: 'not-verified', sentence: 'Reached and signed in; MQTT 3.1.1 accepted, certificate NOT verified (verification is off).' });
      const [, refused] = await testConnection(profile(url, undefined));
      expect(refused?.ok).toBe(false);
      expect(refused?.sentence).toBe(
        `The broker at ${url} presented a certificate that could not be verified (DEPTH_ZERO_SELF_SIGNED_CERT): give its CA file (on the command line: --tls-ca ca.pem), or turn certificate verification off (--tls-insecure).`,
      );
      const [, missing] = await testConnection(profile(url, { caFile: join(certDir, 'nope.pem') }));
      expect(missing).toMatchObject({ ok: false, sentence: `The CA file "${join(certDir, 'nope.pem')}" cannot be read: there is no such file.` });
    } finally {
      await node.close();
    }
  });
});
