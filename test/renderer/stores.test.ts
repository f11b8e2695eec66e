import type { App } from 'vue';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { TraceStep } from '../../src/shared/trace';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { SendRequestArgs } from '../../src/shared/contract';
import { payloadProblem, useComposeStore } from '../../src/renderer/src/stores/compose';
import { BATCH_SHOW_BURST, BATCH_SHOWS_PER_SECOND, MAX_RPCS_SHOWN, useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { webSocketClient } from '../../src/renderer/src/client';
import { appWith, fakeClient } from './fake-client';
import { fakeWorkspace } from './fake-workspace';
import { useHistoryStore } from '../../src/renderer/src/stores/history';
import { flushPromises } from '@vue/test-utils';

const step = (rpcId: string, seq: number): TraceStep => ({
  rpcId,
  seq,
  at: 1000 + seq,
  source: 'client',
  kind: 'composed',
  detail: { topic: 'rpc_queue', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'shared', bytes: 3 },
});

const outcome = (id: string): RpcOutcome => ({
  id,
  replyTopic: 'reply/x',
  arrivedOn: 'reply/x',
  topicMismatch: false,
  body: { kind: 'json', value: { id, result: 1 } },
  result: 1,
  durationMs: 2,
  publishQos: { asked: 1, acknowledgedAs: 1 },
  subscriptionQos: { asked: 1, granted: 1 },
  warnings: [],
});

describe('compose store', () => {
  let app: App;
  let client: ReturnType<typeof fakeClient>;
  let sent: SendRequestArgs[];
  beforeEach(() => {
    sent = [];
    client = fakeClient({
      'rpc.request.send': (args) => {
        sent.push({ ...args });
        return outcome(`r${sent.length}`);
      },
    });
    app = appWith(client);
  });

  it('validates the payload as JSON, accepting an empty box', () => {
    expect(payloadProblem('')).toBeUndefined();
    expect(payloadProblem('{"a": 1}')).toBeUndefined();
    expect(payloadProblem('{"a": ')).toMatch(/^Not valid JSON/);
  });

  it('blocks sending while the payload is not JSON', () => {
    const compose = app.runWithContext(() => useComposeStore());
    compose.form.payloadText = '{oops';
    expect(compose.blocked).toBe(true);
  });

  it('maps and lints the topics as they are typed, without asking the backend', () => {
    const compose = app.runWithContext(() => useComposeStore());
    compose.form.topic = 'devices/d1/rpc';
    compose.form.replyTopic = 'reply/v1.2/x';
    expect(compose.requestMapping).toMatchObject({ routingKey: 'devices.d1.rpc', roundTrips: true, issues: [] });
    expect(compose.replyMapping).toMatchObject({ routingKey: 'reply.v1.2.x', backToTopic: 'reply/v1/2/x', roundTrips: false });
    expect(client.calls).toEqual([]);
  });

  it('blocks sending on the same rule as the core: any error in the request topic, a wildcard in the reply topic, but not a "." in it', () => {
    const compose = app.runWithContext(() => useComposeStore());
    compose.form.replyTopic = 'reply/v1.2/x';
    expect(compose.blocked).toBe(false);
    compose.form.replyTopic = 'reply/+';
    expect(compose.blocked).toBe(true);
    compose.form.replyTopic = '';
    compose.form.topic = 'rpc/#';
    expect(compose.blocked).toBe(true);
    compose.form.topic = 'rpc.queue';
    expect(compose.blocked).toBe(false);
  });

  /** Compose and a started history store over a fake workspace that records each send as the core would. */
  async function withRecordedHistory() {
    const workspace = fakeWorkspace();
    const replying = workspace.recording(client.invoke.bind(client, 'rpc.request.send') as never);
    const recording = fakeClient({ ...workspace.answers, 'rpc.request.send': replying });
    workspace.connect(recording);
    app = appWith(recording);
    const compose = app.runWithContext(() => useComposeStore());
    const history = app.runWithContext(() => useHistoryStore());
    await history.start();
    return { compose, history };
  }

  it('replays a history entry: the form is filled with it and nothing goes out until Send; then the same request is sent', async () => {
    const { compose, history } = await withRecordedHistory();
    compose.form.topic = 'devices/d1/rpc';
    compose.form.replyTopic = 'reply/mine';
    compose.form.method = 'reboot';
    compose.form.payloadText = '{"params": {"delay": 3}}';
    await compose.send();
    await flushPromises();
    expect(compose.outcome?.id).toBe('r1');
    // The form moves on; the replay must send what was sent, not what the form now says.
    Object.assign(compose.form, { topic: 'other', replyTopic: '', method: '', payloadText: '{}' });
    history.replay(history.entries[0]!);
    await flushPromises();
    expect(sent).toHaveLength(1);
    expect(compose.filledFrom).toBe('the history');
    await compose.send();
    await flushPromises();
    expect(compose.filledFrom).toBeUndefined();
    expect(sent).toHaveLength(2);
    expect(sent[1]).toEqual(sent[0]);
    expect(sent[0]).toMatchObject({ topic: 'devices/d1/rpc', replyTopic: 'reply/mine', method: 'reboot', payloadText: '{"params": {"delay": 3}}' });
    expect(history.entries.map((entry) => entry.rpcId)).toEqual(['r2', 'r1']);
    expect(history.entries[0]?.request).toEqual(sent[0]);
  });

  it('replays an entry whose body was too big to keep: the form is filled and asks for the body, and nothing empty is sent', async () => {
    const { compose, history } = await withRecordedHistory();
    const big = JSON.stringify({ params: { blob: 'x'.repeat(100 * 1024) } });
    compose.form.topic = 'devices/d1/rpc';
    compose.form.payloadText = big;
    await compose.send();
    await flushPromises();
    expect(history.entries[0]).toMatchObject({ bodyNotKept: big.length, request: { topic: 'devices/d1/rpc', payloadText: '' } });
    compose.form.topic = 'other';
    history.replay(history.entries[0]!);
    await flushPromises();
    // Not sent again with an empty body: the form holds the request and says what is missing.
    expect(sent).toHaveLength(1);
    expect(compose.form.topic).toBe('devices/d1/rpc');
    expect(compose.form.payloadText).toBe('');
    expect(compose.payloadError).toBe('The body (100.0 KiB) was too big to keep in the history: paste it again to send.');
    expect(compose.blocked).toBe(true);
    // Given the body again, the form sends.
    compose.form.payloadText = big;
    expect(compose.payloadError).toBeUndefined();
    await compose.send();
    expect(sent).toHaveLength(2);
    expect(sent[1]).toMatchObject({ topic: 'devices/d1/rpc', payloadText: big });
  });
});

describe('trace store', () => {
  let client: ReturnType<typeof fakeClient>;
  let app: App;
  beforeEach(() => {
    client = fakeClient({ 'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }) });
    app = appWith(client);
  });
  afterEach(() => void vi.useRealTimers());

  it('ingests a batch of steps with one update, newest RPC first', async () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    await trace.start();
    const before = trace.version;
    client.emit('trace.steps.added', { steps: [step('a', 1), step('b', 2), step('a', 3)] });
    expect(trace.version).toBe(before + 1);
    expect(trace.visibleIds).toEqual(['b', 'a']);
    expect(trace.totalSteps).toBe(3);
  });

  it('shows a stream of batches a few times a second, not at every batch, and loses none of their steps', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });
    const trace = app.runWithContext(() => useTraceViewStore());
    await trace.start();
    const before = trace.version;
    // A load run's stream: the host sends a batch every 30 ms; 2 s of it, 2 RPCs a batch.
    for (let batch = 0; batch < 66; batch += 1) {
      client.emit('trace.steps.added', { steps: [step(`r${batch * 2}`, batch * 4 + 1), step(`r${batch * 2}`, batch * 4 + 2), step(`r${batch * 2 + 1}`, batch * 4 + 3), step(`r${batch * 2 + 1}`, batch * 4 + 4)] });
      vi.advanceTimersByTime(30);
    }
    vi.advanceTimersByTime(1000);
    const shows = trace.version - before;
    // The first batches show at once (a Compose send, a short burst); then BATCH_SHOWS_PER_SECOND a second (3 s in all).
    expect(shows).toBeGreaterThanOrEqual(BATCH_SHOW_BURST);
    expect(shows).toBeLessThanOrEqual(BATCH_SHOW_BURST + 3 * BATCH_SHOWS_PER_SECOND + 1);
    expect(trace.totalSteps).toBe(264);
    expect(trace.visibleIds).toHaveLength(132);
    expect(trace.visibleIds[0]).toBe('r131');
  });

  it('shows a waiting show at once when Compose claims its RPC, a reset in pieces ends, or the panel stops', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });
    const trace = app.runWithContext(() => useTraceViewStore());
    const stop = await trace.start();
    let seq = 0;
    const burst = (count: number): void => {
      for (let batch = 0; batch < count; batch += 1) client.emit('trace.steps.added', { steps: [step(`s${seq}`, ++seq)] });
    };
    // Past the burst, a batch waits for its show: what the panel shows (the list is redrawn at a show) stays as it was.
    expect(trace.visibleIds).toHaveLength(0);
    burst(BATCH_SHOW_BURST + 3);
    expect(trace.totalSteps).toBe(BATCH_SHOW_BURST);
    const shown = trace.version;
    trace.markComposed('s0');
    expect(trace.version).toBe(shown + 1);
    expect(trace.totalSteps).toBe(BATCH_SHOW_BURST + 3);
    expect(trace.visibleIds).toHaveLength(BATCH_SHOW_BURST + 3);
    burst(2);
    expect(trace.totalSteps).toBe(BATCH_SHOW_BURST + 3);
    client.emit('trace.store.reset', { steps: [step('x', 1)], piece: 'first' });
    burst(3);
    client.emit('trace.store.reset', { steps: [step('y', 2)], piece: 'last' });
    expect(trace.totalSteps).toBe(5);
    expect(trace.visibleIds.slice(0, 2)).toEqual(['y', `s${seq - 1}`]);
    burst(2);
    stop();
    expect(trace.totalSteps).toBe(7);
  });

  it('does not count twice the steps a snapshot already held when their event arrives after it, and keeps the RPC being looked at', async () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    await trace.start();
    client.emit('trace.steps.added', { steps: [step('a', 1)] });
    trace.selectedId = 'a';
    // The host resends the whole trace (a page that fell behind); steps 2 and 3 were still on their way as an event.
    client.emit('trace.store.reset', { steps: [step('a', 1), step('b', 2), step('b', 3)] });
    client.emit('trace.steps.added', { steps: [step('b', 2), step('b', 3), step('c', 4)] });
    expect(trace.totalSteps).toBe(4);
    expect(trace.visibleIds).toEqual(['c', 'b', 'a']);
    expect(trace.selectedId).toBe('a');
    // A restarted host counts from 1 again: its snapshot is the new mark.
    client.emit('trace.store.reset', { steps: [step('d', 1)] });
    client.emit('trace.steps.added', { steps: [step('d', 2)] });
    expect(trace.totalSteps).toBe(2);
  });

  it('rebuilds from a reset sent in pieces, keeps every piece, and drops the live steps the pieces already held', async () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    await trace.start();
    client.emit('trace.steps.added', { steps: [step('old', 1)] });
    client.emit('trace.steps.added', { steps: [step('a', 2)] });
    trace.selectedId = 'a';
    // Pieces come in the store's order, not by seq: the second piece holds older steps than the first.
    client.emit('trace.store.reset', { steps: [step('b', 5), step('b', 6)], piece: 'first' });
    client.emit('trace.store.reset', { steps: [step('a', 2), step('a', 3)], piece: 'middle' });
    client.emit('trace.store.reset', { steps: [step('c', 7)], piece: 'middle' });
    client.emit('trace.store.reset', { steps: [], piece: 'last' });
    expect(trace.totalSteps).toBe(5);
    expect(trace.visibleIds).toEqual(['c', 'a', 'b']);
    // A batch still on its way when the pieces were read repeats steps 6 and 7; step 8 is new.
    client.emit('trace.steps.added', { steps: [step('b', 6), step('c', 7), step('c', 8)] });
    expect(trace.totalSteps).toBe(6);
    // The RPC looked at came back in the second piece: still selected.
    expect(trace.selectedId).toBe('a');
  });

  it('drops the pieces still on their way after a plain reset (a Clear during a catch-up)', async () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    await trace.start();
    client.emit('trace.store.reset', { steps: [step('b', 5)], piece: 'first' });
    client.emit('trace.store.reset', { steps: [] });
    client.emit('trace.store.reset', { steps: [step('a', 2)], piece: 'middle' });
    client.emit('trace.store.reset', { steps: [], piece: 'last' });
    expect(trace.totalSteps).toBe(0);
    client.emit('trace.steps.added', { steps: [step('c', 9)] });
    expect(trace.visibleIds).toEqual(['c']);
  });

  it('filters by any text of the steps', async () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    trace.ingest([step('alpha', 1), step('beta', 2)]);
    trace.filter = 'reply/beta';
    expect(trace.visibleIds).toEqual(['beta']);
  });

  it('shows only the RPCs that failed when asked', () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    trace.ingest([step('ok', 1), step('bad', 2), { rpcId: 'bad', seq: 3, at: 1003, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply.' } }]);
    trace.show = 'failed';
    expect(trace.visibleIds).toEqual(['bad']);
    trace.show = 'warnings';
    expect(trace.visibleIds).toEqual(['bad']);
  });

  it(`keeps at most ${MAX_RPCS_SHOWN} RPCs and counts the dropped ones`, () => {
    const trace = app.runWithContext(() => useTraceViewStore());
    trace.ingest(Array.from({ length: MAX_RPCS_SHOWN + 5 }, (_, index) => step(`r${index}`, index)));
    expect(trace.visibleIds).toHaveLength(MAX_RPCS_SHOWN);
    expect(trace.droppedRpcs).toBe(5);
  });
});

describe('WebSocket client', () => {
  class FakeSocket {
    static last: FakeSocket;
    sent: string[] = [];
    onopen: (() => void) | null = null;
    onmessage: ((event: { data: string }) => void) | null = null;
    onclose: (() => void) | null = null;
    onerror: (() => void) | null = null;
    constructor(readonly url: string) {
      FakeSocket.last = this;
      queueMicrotask(() => this.onopen?.());
    }
    send(data: string): void {
      this.sent.push(data);
      const frame = JSON.parse(data) as { id: number; command: string };
      queueMicrotask(() =>
        this.onmessage?.({
          data: JSON.stringify(
            frame.command === 'app.state.get'
              ? { type: 'reply', id: frame.id, ok: true, result: { mode: 'browser' } }
              : { type: 'reply', id: frame.id, ok: false, error: { code: 'bad-input', message: 'No.' } },
          ),
        }),
      );
    }
  }

  it('matches replies to invokes by id and turns error replies into one-sentence errors', async () => {
    const client = webSocketClient('ws://x/ws?token=t', FakeSocket as unknown as typeof WebSocket);
    await expect(client.invoke('app.state.get', {})).resolves.toMatchObject({ mode: 'browser' });
    await expect(client.invoke('server.stop', {})).rejects.toThrow('No.');
  });

  it('fans events out to listeners until they unsubscribe', async () => {
    const client = webSocketClient('ws://x/ws?token=t', FakeSocket as unknown as typeof WebSocket);
    const seen: number[] = [];
    const off = client.on('trace.steps.added', ({ steps }) => seen.push(steps.length));
    await client.invoke('app.state.get', {});
    FakeSocket.last.onmessage?.({ data: JSON.stringify({ type: 'event', name: 'trace.steps.added', payload: { steps: [] } }) });
    off();
    FakeSocket.last.onmessage?.({ data: JSON.stringify({ type: 'event', name: 'trace.steps.added', payload: { steps: [] } }) });
    expect(seen).toEqual([0]);
  });
});
