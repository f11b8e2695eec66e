import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli';

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
