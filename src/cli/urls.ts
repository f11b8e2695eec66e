/** Where the CLI finds broker URLs: the flag, then BRIDGESCOPE_*_URL, then the running sandbox broker. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSandboxDir, type SandboxInfo } from '../core/broker/sandbox';
import { BridgeError } from '../core/errors';

type UrlKind = 'amqp' | 'mqtt' | 'management';

const envNames: Record<UrlKind, string> = {
  amqp: 'BRIDGESCOPE_AMQP_URL',
  mqtt: 'BRIDGESCOPE_MQTT_URL',
  management: 'BRIDGESCOPE_MANAGEMENT_URL',
};

function sandboxUrls(): SandboxInfo['urls'] | undefined {
  try {
    const info = JSON.parse(readFileSync(join(defaultSandboxDir(), 'sandbox.json'), 'utf8')) as SandboxInfo;
    return info.urls;
  } catch {
    return undefined;
  }
}

export function resolveUrl(kind: UrlKind, flag: string | undefined): string {
  const fromEnv = process.env[envNames[kind]];
  const url = flag ?? (fromEnv || undefined) ?? sandboxUrls()?.[kind];
  if (!url) {
    throw new BridgeError(
      'bad-input',
      `No ${kind === 'management' ? 'management' : kind.toUpperCase()} URL: pass --${kind}, set ${envNames[kind]}, or start the sandbox broker with \`bridgescope broker start\`.`,
    );
  }
  return url;
}
