/**
 * TLS for the command line: a private CA, a client certificate and key (mutual TLS, common for devices' brokers), or no
 * verification at all, for every connection a command makes (AMQP, MQTT, the management API), as a profile's TLS
 * settings do in the app. Each comes from its flag, else from BRIDGESCOPE_TLS_* (the app's environment profile reads the
 * same variables). The files are read once, as the command starts (see `action`): a wrong path is one sentence, exit 2,
 * before anything connects. They are used for amqps://, mqtts://, wss:// and https:// URLs only, so settings that come
 * only from the variables are not read at all when no URL the command was given (flag or BRIDGESCOPE_*_URL) uses TLS:
 * a variable left over from another broker does not fail a command against a plain one (the sandbox, say).
 */
import type { Command } from 'commander';
import { tlsFiles, type TlsFiles } from '../core/connection-details';
import { BridgeError } from '../core/errors';
import { givenFlags, KINDS, type UrlKind } from './given-urls';
import { TLS_ENV, tlsSettings, type TlsOptions } from '../shared/tls-settings';

export function addTlsOptions(command: Command): Command {
  return command
    .option('--tls-ca <file>', `CA certificate(s) (PEM) to verify the broker's TLS certificate with (default: $${TLS_ENV.ca})`)
    .option('--tls-cert <file>', `client certificate (PEM) for brokers that ask for one (default: $${TLS_ENV.cert})`)
    .option('--tls-key <file>', `the client certificate's private key (PEM) (default: $${TLS_ENV.key})`)
    .option('--tls-insecure', `do not verify the broker's TLS certificate (default: $${TLS_ENV.verify}=false)`)
    .option('--tls-verify', `verify the broker's TLS certificate even when $${TLS_ENV.verify}=false (the default without it)`);
}

/** The running command's TLS files (see `noteTls`). */
let current: TlsFiles | undefined;

/**
 * For a command with the TLS options (commander hands an action its arguments, its options, then the command): reads
 * the files its flags or the environment name; throws one sentence for a file it cannot read. Other commands (map,
 * broker) connect to nothing over TLS and read nothing.
 */
export async function noteTls(args: readonly unknown[]): Promise<void> {
  current = undefined;
  const command = args.at(-1) as { options?: Array<{ long?: string }> } | undefined;
  if (!Array.isArray(command?.options) || !command.options.some((option) => option.long === '--tls-ca')) return;
  const flags = (args.at(-2) ?? {}) as TlsOptions;
  if (flags.tlsVerify === true && flags.tlsInsecure === true) {
    throw new BridgeError('bad-input', 'Give --tls-verify or --tls-insecure, not both: one verifies the broker\'s certificate, the other does not.');
  }
  const settings = tlsSettings(flags);
  if (!settings) return;
  // A file flag is read whatever the URLs (the user asked for it); --tls-insecure alone names no file.
  const flagged = Boolean(flags.tlsCa?.trim() || flags.tlsCert?.trim() || flags.tlsKey?.trim());
  const kinds = KINDS.filter((kind) => command.options?.some((option) => option.long === `--${kind}`));
  if (!flagged && !givesTlsUrl(kinds)) return;
  // As the app's profile check says it: a broker asking for the certificate would refuse it without its key.
  if ((settings.certFile === undefined) !== (settings.keyFile === undefined)) {
    throw new BridgeError('bad-input', `A client certificate needs its key file, and a key its certificate: give --tls-cert and --tls-key together (or ${TLS_ENV.cert} and ${TLS_ENV.key}).`);
  }
  current = await tlsFiles({ tls: settings });
}

const URL_VARIABLES = { amqp: 'BRIDGESCOPE_AMQP_URL', mqtt: 'BRIDGESCOPE_MQTT_URL', management: 'BRIDGESCOPE_MANAGEMENT_URL' } as const;

/**
 * Whether a URL the command was given, by flag or variable, uses TLS (a URL derived from it uses TLS only then): of the
 * kinds it connects to, those it has a flag for (`watch` has no --mqtt, so BRIDGESCOPE_MQTT_URL=mqtts://... is not its).
 */
function givesTlsUrl(kinds: readonly UrlKind[], env: NodeJS.ProcessEnv = process.env): boolean {
  return kinds.some((kind) => /(^|[\s,])(amqps|mqtts|wss|https):\/\//i.test(givenFlags[kind] ?? env[URL_VARIABLES[kind]] ?? ''));
}

/** The TLS files for every connection of the running command, or undefined. */
export function cliTls(): TlsFiles | undefined {
  return current;
}

/** `{ tls }` when the command has TLS files, else nothing: spread into a link's or a tracer's options. */
export function withCliTls(): { tls?: TlsFiles } {
  return current ? { tls: current } : {};
}
