/**
 * The URL flags (--amqp, --mqtt, --management) of the command being run, noted as it starts (see `action`), so a URL the
 * command was not given can follow the broker the others name (src/cli/urls.ts). No imports: every command loads it.
 */
export type UrlKind = 'amqp' | 'mqtt' | 'management';
export const KINDS: readonly UrlKind[] = ['amqp', 'mqtt', 'management'];

/** The URL flags of the command being run (see `noteGivenUrls`). */
export const givenFlags: Partial<Record<UrlKind, string>> = {};
/** Kinds whose derived URL was already said on stderr (once per run). */
export const said = new Set<UrlKind>();

/** Remembers the command's --amqp, --mqtt and --management, so a URL not given can follow the broker the others name. */
export function noteGivenUrls(args: readonly unknown[]): void {
  for (const arg of args) {
    if (arg === null || typeof arg !== 'object' || Array.isArray(arg)) continue;
    for (const kind of KINDS) {
      const value = (arg as Record<string, unknown>)[kind];
      if (typeof value === 'string' && value.trim() !== '') givenFlags[kind] = value;
    }
  }
}

/** Forgets the noted flags (tests run several commands in one process). */
export function forgetGivenUrls(): void {
  for (const kind of KINDS) delete givenFlags[kind];
  said.clear();
}

