/**
 * TLS settings given by flags (the command line's --tls-*) or by BRIDGESCOPE_TLS_* (the command line and the environment
 * profile of `ui` and `npm start`), as a profile holds them. No imports: the command line's every start loads it.
 */
import type { ConnectionProfile } from './contract';

/** TLS settings given as flags (the command line's --tls-*). */
export interface TlsOptions {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsInsecure?: boolean;
  /** verify the certificate whatever BRIDGESCOPE_TLS_VERIFY says (a variable left at false for another broker) */
  tlsVerify?: boolean;
}

/** The variables that give TLS settings to the command line and to the environment profile (`ui`, `npm start`). */
export const TLS_ENV = {
  ca: 'BRIDGESCOPE_TLS_CA_FILE',
  cert: 'BRIDGESCOPE_TLS_CERT_FILE',
  key: 'BRIDGESCOPE_TLS_KEY_FILE',
  verify: 'BRIDGESCOPE_TLS_VERIFY',
} as const;

/** The TLS settings of the flags, else of the environment, as a profile holds them; undefined when none is set. */
export function tlsSettings(options: TlsOptions, env: NodeJS.ProcessEnv = process.env): ConnectionProfile['tls'] {
  const file = (flag: string | undefined, variable: string): string | undefined => flag?.trim() || env[variable]?.trim() || undefined;
  const caFile = file(options.tlsCa, TLS_ENV.ca);
  const certFile = file(options.tlsCert, TLS_ENV.cert);
  const keyFile = file(options.tlsKey, TLS_ENV.key);
  // A flag wins over the variable; --tls-verify with --tls-insecure is refused by the command line (see noteTls).
  const verify = options.tlsVerify === true || !(options.tlsInsecure === true || /^(false|0|no|off)$/i.test(env[TLS_ENV.verify]?.trim() ?? ''));
  if (caFile === undefined && certFile === undefined && keyFile === undefined && verify) return undefined;
  return { ...(caFile !== undefined ? { caFile } : {}), ...(certFile !== undefined ? { certFile } : {}), ...(keyFile !== undefined ? { keyFile } : {}), verify };
}
