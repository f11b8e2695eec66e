/** The version each broker rule needs, said plainly, and its source as links a user can open (RabbitMQ's repository at the tag named). */

export const RABBITMQ_MQTT_GUIDE = 'https://www.rabbitmq.com/docs/mqtt';
const REPOSITORY = 'https://github.com/rabbitmq/rabbitmq-server';

/** "3.13+" -> "RabbitMQ 3.13 and later"; "before 4.0" -> "before RabbitMQ 4.0"; "every version" stays; "16 MiB from 4.1, …" stays. */
export function ruleNeeds(versions: string): string {
  const since = /^(\d+\.\d+)\+$/.exec(versions);
  if (since) return `${since[1]} and later`;
  const range = /^(\d+\.\d+) to before (\d+\.\d+)$/.exec(versions);
  if (range) return `${range[1]} up to ${range[2]}`;
  if (versions === 'unknown') return 'any version';
  return versions.charAt(0).toUpperCase() + versions.slice(1);
}

export interface SourceLink {
  label: string;
  href: string;
}

/**
 * The files a rule's source names, as links: `release-notes/3.13.0.md` to its page, `deps/…/x.erl … at v3.13.0` to that
 * file at that tag (at main when no tag is named). Measured facts (docs/RABBITMQ.md, GET /api/overview) get no link.
 */
export function sourceLinks(source: string): SourceLink[] {
  const links: SourceLink[] = [];
  const tags = [...source.matchAll(/\bv(\d+\.\d+\.\d+)\b/g)].map((match) => `v${match[1]}`);
  for (const match of source.matchAll(/\b(release-notes\/[\w.-]+\.md|deps\/[\w/.-]+\.erl)\b/g)) {
    const path = match[1] as string;
    const ref = path.startsWith('release-notes/') ? 'main' : (tags[0] ?? 'main');
    const href = `${REPOSITORY}/blob/${ref}/${path}`;
    if (!links.some((link) => link.href === href)) links.push({ label: path.split('/').at(-1) as string, href });
  }
  return links;
}
