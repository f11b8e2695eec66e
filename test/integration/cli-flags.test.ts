import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../support/cli';

const wrong: Array<[string, string[], RegExp]> = [
  ['broker start --timeout', ['broker', 'start', '--timeout', '-5'], /--timeout takes a whole number above 0/],
  ['serve --workers', ['serve', '--workers', 'two'], /--workers takes a whole number above 0/],
  ['serve --prefetch', ['serve', '--prefetch', '0'], /--prefetch takes a whole number above 0/],
  ['serve --handler', ['serve', '--amqp', 'amqp://127.0.0.1:1', '--handler', 'sleep'], /Unknown handler "sleep"/],
  ['serve --amqp', ['serve', '--amqp', 'http://nope'], /must start with amqp:\/\//],
  ['call --qos', ['call', '--qos', '3'], /--qos takes one of 0, 1, 2/],
  ['call --reply', ['call', '--reply', 'sometimes'], /--reply takes one of per-request, shared/],
  ['call --timeout', ['call', '--timeout', '1.5'], /--timeout takes a whole number above 0/],
  ['call --mqtt-version', ['call', '--mqtt-version', '3'], /--mqtt-version takes one of 4, 5, auto/],
  ['call --mqtt', ['call', '--mqtt', 'not a url'], /is not a valid MQTT URL/],
  ['call PAYLOAD', ['call', '--mqtt', 'mqtt://127.0.0.1:1', '{"unterminated'], /PAYLOAD is not valid JSON/],
  ['map --role', ['map', 'a/b', '--role', 'device'], /--role takes one of publish, reply, filter/],
  ['bench --rounds', ['bench', '--rounds', 'many'], /--rounds takes a whole number above 0/],
  ['bindings --management', ['bindings', '--management', 'ftp://x'], /must start with http:\/\/ or https:\/\//],
  ['ui --port', ['ui', '--port', '70000'], /--port takes a port number from 1 to 65535, not "70000"/],
];

describe('every CLI flag', () => {
  it('rejects a wrong value with exit code 2 and one sentence on stderr', async () => {
    const results = await Promise.all(wrong.map(([, args]) => runCli(args)));
    results.forEach((result, index) => {
      const [label, , message] = wrong[index] as [string, string[], RegExp];
      expect({ label, code: result.code }).toEqual({ label, code: 2 });
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    });
  });
});

describe("mqtt.js's debug log in the built command line", () => {
  it('comes out when DEBUG names it, and not one line of it otherwise', async () => {
    const args = ['call', '--mqtt', 'mqtt://127.0.0.1:1', '--timeout', '2000'];
    const [asked, quiet] = await Promise.all([runCli(args, { env: { DEBUG: 'mqttjs*', DEBUG_COLORS: 'no' } }), runCli(args, { env: { DEBUG: '' } })]);
    expect(asked.stderr).toMatch(/mqttjs connecting to an MQTT broker/);
    expect(quiet.stderr).not.toMatch(/mqttjs|mqtt-packet/);
    expect(quiet.stderr).toMatch(/Nothing accepts MQTT connections at mqtt:\/\/127\.0\.0\.1:1/);
  });
});

describe('call with a mistyped broker URL', () => {
  /** A port that counts the connections made to it: a call that went ahead would connect there. */
  async function countingPort(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let count = 0;
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      count += 1;
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as AddressInfo).port,
      connections: () => count,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  it('refuses it in one sentence (exit 2) before connecting anywhere, as the other commands do', async () => {
    const [mqtt, amqp, management] = await Promise.all([countingPort(), countingPort(), countingPort()]);
    try {
      const env = { BRIDGESCOPE_SANDBOX_DIR: '/nonexistent', BRIDGESCOPE_AMQP_URL: '', BRIDGESCOPE_MQTT_URL: '', BRIDGESCOPE_MANAGEMENT_URL: '' };
      const urls = { mqtt: `mqtt://127.0.0.1:${mqtt.port}`, amqp: `amqp://guest:guest@127.0.0.1:${amqp.port}`, management: `http://127.0.0.1:${management.port}` };
      const call = (over: Partial<typeof urls>): Promise<CliResult> => {
        const given = { ...urls, ...over };
        return runCli(['call', '--mqtt', given.mqtt, '--amqp', given.amqp, '--management', given.management, '--timeout', '1500', '{}'], { env });
      };
      // `amqp//` (the ':' left out): --amqp is used only to ask why a call failed, and was read only then.
      const [noColon, oneSlash, amqpOneSlash] = await Promise.all([
        call({ amqp: `amqp//guest:s3cret@127.0.0.1:${amqp.port}` }),
        // `mqtt:/` (one slash): a parser reads a path and no host, and the client went to localhost:1883, another broker.
        call({ mqtt: `mqtt:/127.0.0.1:${mqtt.port}` }),
        call({ amqp: `amqp:/guest:s3cret@127.0.0.1:${amqp.port}` }),
      ]);
      expect(noColon.stderr).toBe(`bridgescope: "amqp//guest:***@127.0.0.1:${amqp.port}" is not a valid AMQP URL (expected amqp://***@host:5672/vhost).\n`);
      expect(oneSlash.stderr).toBe(`bridgescope: "mqtt:/127.0.0.1:${mqtt.port}" has no host after the scheme: write mqtt://127.0.0.1:${mqtt.port} (two slashes after "mqtt:").\n`);
      expect(amqpOneSlash.stderr).toBe(`bridgescope: "amqp:***@127.0.0.1:${amqp.port}" has no host after the scheme: write amqp://***@127.0.0.1:${amqp.port} (two slashes after "amqp:").\n`);
      for (const result of [noColon, oneSlash, amqpOneSlash]) {
        expect(result.code).toBe(2);
        expect(result.stdout).toBe('');
        expect(result.stderr).not.toContain('s3cret');
      }
      expect([mqtt.connections(), amqp.connections(), management.connections()]).toEqual([0, 0, 0]);
    } finally {
      await Promise.all([mqtt.close(), amqp.close(), management.close()]);
    }
  });
});
