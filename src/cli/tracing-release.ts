/** What `trace` and `watch --mode firehose` say when they give the vhost's tracing back (see `releaseTracing`). */
import type { TracingRelease } from '../core/trace/firehose';
import { say } from './run';

/** Throws the failure's sentence; quietWhenLeftOn: a second release after the tracer's own has nothing new to say unless it switched tracing off. */
export function reportRelease(release: TracingRelease, vhost: string, { quietWhenLeftOn = false } = {}): void {
  if (release.outcome === 'failed') throw new Error(release.reason);
  // Never read, never changed: "restored" would claim a state it never saw.
  if (release.outcome === 'untouched') return;
  if (quietWhenLeftOn && release.outcome === 'left-on') return;
  if (release.outcome === 'switched-off') say(`Tracing restored: switched off on vhost ${vhost}.`);
  else if (release.why === 'in-use') say('Tracing restored: left on for another BridgeScope tracer still running.');
  else say('Tracing restored: left on, as it was found.');
}
