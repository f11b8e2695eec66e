import { describe, expect, it } from 'vitest';
import { ConnectionController } from '../../src/core/session/connection';
import type { TracingRelease } from '../../src/core/trace/firehose';
import { fakeConnectionFactories, Journal, profile } from './session-fakes';

function setUp() {
  const journal = new Journal();
  const parts = fakeConnectionFactories(journal);
  const seen = { changes: 0, down: 0, up: 0, attached: 0, detached: 0 };
  const connection = new ConnectionController({
    factories: parts.factories,
    attachSteps: () => {
      seen.attached += 1;
      return () => void (seen.detached += 1);
    },
    onChange: () => void (seen.changes += 1),
    onLinksDown: () => void (seen.down += 1),
    onLinksUp: () => void (seen.up += 1),
  });
  return { connection, parts, journal, seen };
}

describe('the connection controller', () => {
  it('answers not-connected before a connection is open', () => {
    const { connection } = setUp();
    expect(() => connection.require()).toThrow(expect.objectContaining({ code: 'not-connected' }));
    expect(connection.view()).toEqual({ links: { amqp: { state: 'idle' }, mqtt: { state: 'idle' } } });
  });

  it('opens both links, feeds the client steps into the trace, and shows the profile without its passwords', async () => {
    const { connection, journal, seen } = setUp();
    await connection.open(profile);
    expect(journal.entries.sort()).toEqual(['client.connect', 'inspector.open']);
    expect(seen.attached).toBe(1);
    const view = connection.view();
    expect(view.links).toEqual({ amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } });
    expect(view.profile?.amqpUrl).toBe('amqp://guest:***@127.0.0.1:1/');
    expect(view.overview?.rabbitmqVersion).toBe('3.10.8');
    expect(view.notice).toBeUndefined();
  });

  it('closes whatever it opened and stays unconnected when a link cannot open', async () => {
    const { connection, parts, journal, seen } = setUp();
    parts.client.failConnect = new Error('Cannot connect over MQTT');
    await expect(connection.open(profile)).rejects.toThrow('Cannot connect over MQTT');
    expect(journal.entries).toEqual(expect.arrayContaining(['client.close', 'inspector.close']));
    expect(seen.detached).toBe(1);
    expect(connection.current).toBeUndefined();
  });

  it('says once, in its notice, why the previous connection failed to close and that a dead process left tracing on', async () => {
    const { connection, parts } = setUp();
    parts.abandoned = { restore: async () => ({ outcome: 'switched-off' }) };
    await connection.open(profile, 'Could not switch firehose tracing off.');
    expect(connection.view().notice).toBe('Could not switch firehose tracing off. Tracing was left on by a dead BridgeScope.');
  });

  it('tells the links went down once, however many drops follow, and that they came back once both are up', async () => {
    const { connection, parts, seen } = setUp();
    await connection.open(profile);
    parts.client.link.setStatus({ state: 'reconnecting', since: 2, attempt: 1, lastError: 'ECONNRESET' });
    parts.inspector.setStatus({ state: 'reconnecting', since: 2, attempt: 1, lastError: 'ECONNRESET' });
    expect(seen.down).toBe(1);
    parts.client.link.setStatus({ state: 'connected', since: 3 });
    expect(seen.up).toBe(0);
    parts.inspector.setStatus({ state: 'connected', since: 3 });
    expect(seen.up).toBe(1);
  });

  it('gives back abandoned tracing on close and closes the links even when that fails, returning the failure to tell', async () => {
    const { connection, parts, journal, seen } = setUp();
    const failed: TracingRelease = { outcome: 'failed', code: 'auth', reason: 'Could not switch firehose tracing off on vhost / (refused); it may still be on.' };
    parts.abandoned = { restore: async () => failed };
    await connection.open(profile);
    const failure = await connection.close();
    expect(failure).toMatchObject({ code: 'auth', message: failed.reason });
    expect(journal.entries).toEqual(expect.arrayContaining(['client.close', 'inspector.close']));
    expect(seen.detached).toBe(1);
    expect(connection.view()).toEqual({ links: { amqp: { state: 'idle' }, mqtt: { state: 'idle' } } });
    // Status events of the closed links no longer reach the session.
    const before = seen.changes;
    parts.client.link.setStatus({ state: 'reconnecting', since: 9, attempt: 1, lastError: 'late' });
    expect(seen.changes).toBe(before);
  });
});
