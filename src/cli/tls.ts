/**
 * TLS for the command line: a private CA, a client certificate and key (mutual TLS, common for devices' brokers), or no
 * verification at all, for every connection a command makes (AMQP, MQTT, the management API), as a profile's TLS
 * settings do in the app. Each comes from its flag, else from BRIDGESCOPE_TLS_* (the app's environment profile reads the
 * same variables). The files are read once, as the command starts (see `action`), whatever its URLs: a wrong path
 * (flag or variable) is one sentence, exit 2, before anything connects. They are used for amqps://, mqtts://, wss://
 * and https:// URLs only.
 */
import type { Command } from 'commander';
import { tlsFiles, type TlsFiles } from '../core/connection-details';
import { BridgeError } from '../core/errors';
import { TLS_ENV, tlsSettings, type TlsOptions } from '../shared/tls-settings';

export function addTlsOptions(command: Command): Command {
  return command
    .option('--tls-ca <file>', `CA certificate(s) (PEM) to verify the broker's TLS certificate with (default: $${TLS_ENV.ca})`)
    .option('--tls-cert <file>', `client certificate (PEM) for brokers that ask for one (default: $${TLS_ENV.cert})`)
    .option('--tls-key <file>', `the client certificate's private key (PEM) (default: $${TLS_ENV.key})`)
    .option('--tls-insecure', `do not verify the broker's TLS certificate (default: $${TLS_ENV.verify}=false)`);
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
  const settings = tlsSettings((args.at(-2) ?? {}) as TlsOptions);
  if (!settings) return;
  // As the app's profile check says it: a broker asking for the certificate would refuse it without its key.
  if ((settings.certFile === undefined) !== (settings.keyFile === undefined)) {
    throw new BridgeError('bad-input', `A client certificate needs its key file, and a key its certificate: give --tls-cert and --tls-key together (or ${TLS_ENV.cert} and ${TLS_ENV.key}).`);
  }
  current = await tlsFiles({ tls: settings });
}

/** The TLS files for every connection of the running command, or undefined. */
export function cliTls(): TlsFiles | undefined {
  return current;
}

/** `{ tls }` when the command has TLS files, else nothing: spread into a link's or a tracer's options. */
export function withCliTls(): { tls?: TlsFiles } {
  return current ? { tls: current } : {};
}
