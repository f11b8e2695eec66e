/**
 * One RPC, one story (issue 26): the verdict word for an RPC is the same in the Reply panel (Compose), History, the Trace
 * list and the Trace header, and it is the latest one decided (a timeout's "server slow" turns into "late reply" when
 * the reply comes after all; a "replied" the broker's record later doubts turns into "foreign reply").
 */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VERDICT_WORDS, type Verdict, type VerdictCode } from '../../src/shared/diagnosis';
import type { AppState } from '../../src/shared/contract';
import type { ErrorCode } from '../../src/shared/errors';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { TraceStep } from '../../src/shared/trace';
import { BackendError } from '../../src/renderer/src/client';
import { clientKey } from '../../src/renderer/src/injection';
import { useNavStore } from '../../src/renderer/src/stores/nav';
import App from '../../src/renderer/src/App.vue';
import { fakeClient } from './fake-client';
import { fakeWorkspace } from './fake-workspace';

const verdictOf = (code: VerdictCode): Verdict => ({ code, hop: 'server', message: `the sentence for ${code}`, evidence: [`evidence for ${code}`] });

interface Scenario {
  name: string;
  /** what the call answered with: a reply (with its verdict) or a failure (with its verdict) */
  answer: { reply: Partial<RpcOutcome> } | { failure: { code: ErrorCode; message: string } };
  told: VerdictCode;
  /** the trace's verdicts, in the order decided: the last is the one every panel shows */
  traced: VerdictCode[];
}

const SCENARIOS: Scenario[] = [
  { name: 'replied', answer: { reply: {} }, told: 'replied', traced: ['replied'] },
  { name: 'server slow (still no reply)', answer: { failure: { code: 'timeout', message: 'No reply within 5000 ms.' } }, told: 'server-slow', traced: ['server-slow'] },
  { name: 'late reply (timed out, then the reply came)', answer: { failure: { code: 'timeout', message: 'No reply within 5000 ms.' } }, told: 'server-slow', traced: ['server-slow', 'late-reply'] },
  { name: 'reply on another topic', answer: { reply: { topicMismatch: true, arrivedOn: 'reply/other' } }, told: 'reply-on-other-topic', traced: ['reply-on-other-topic'] },
  { name: 'error reply', answer: { reply: { error: { code: '-32601', message: 'Method not found' }, result: undefined } }, told: 'replied-error', traced: ['replied-error'] },
  { name: 'no consumer', answer: { failure: { code: 'timeout', message: 'No reply within 5000 ms.' } }, told: 'no-consumer', traced: ['no-consumer'] },
  { name: 'request unroutable', answer: { failure: { code: 'timeout', message: 'No reply within 5000 ms.' } }, told: 'request-unroutable', traced: ['request-unroutable'] },
  { name: 'rejected', answer: { failure: { code: 'timeout', message: 'No reply within 5000 ms.' } }, told: 'request-rejected', traced: ['request-rejected'] },
  { name: 'foreign reply (replied, then doubted)', answer: { reply: {} }, told: 'replied', traced: ['replied', 'reply-foreign'] },
  { name: 'two replies (replied, then a second one)', answer: { reply: {} }, told: 'replied', traced: ['replied', 'replied-twice'] },
  { name: 'cancelled', answer: { failure: { code: 'cancelled', message: 'Cancelled.' } }, told: 'cancelled', traced: ['cancelled'] },
];

function stepsOf(rpcId: string, scenario: Scenario): TraceStep[] {
  const at = 1000;
  const steps: TraceStep[] = [
    { rpcId, seq: 1, at, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: 20 } },
    { rpcId, seq: 2, at: at + 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
  ];
  if ('reply' in scenario.answer || scenario.traced.includes('late-reply')) {
    steps.push({ rpcId, seq: 3, at: at + 11, source: 'client', kind: 'mqtt.reply.received', detail: { topic: `reply/${rpcId}`, replyTopic: `reply/${rpcId}`, topicMismatch: false, bytes: 4 } });
  }
  if ('failure' in scenario.answer) steps.push({ rpcId, seq: 4, at: at + 5000, source: 'client', kind: 'rpc.failed', detail: scenario.answer.failure });
  scenario.traced.forEach((code, index) => steps.push({ rpcId, seq: 10 + index, at: at + 6000 + index, source: 'client', kind: 'rpc.diagnosed', detail: { verdict: verdictOf(code) } }));
  return steps;
}

const state = {
  mode: 'browser',
  sandbox: { state: 'stopped' },
  profile: { name: 'Sandbox broker', amqpUrl: 'amqp://127.0.0.1:5673', mqttUrl: 'mqtt://127.0.0.1:1884', managementUrl: 'http://127.0.0.1:15673', vhost: '/', exchange: 'amq.direct' },
  links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
  tracer: { state: 'off' },
  server: { state: 'stopped', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } },
} as AppState;

describe('one verdict per RPC, the same word in every panel', () => {
  let height: { mockRestore(): void };
  // The Trace list is virtual: it draws the rows that fit its height, which happy-dom does not lay out.
  beforeEach(() => {
    height = vi.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockReturnValue(400);
  });
  afterEach(() => height.mockRestore());

  it.each(SCENARIOS)('$name', async (scenario) => {
    const rpcId = `rpc-${scenario.told}-${scenario.traced.length}`;
    const told = verdictOf(scenario.told);
    const workspace = fakeWorkspace();
    const send = async (): Promise<RpcOutcome> => {
      if ('failure' in scenario.answer) throw new BackendError({ ...scenario.answer.failure, rpcId, verdict: told });
      return {
        id: rpcId,
        replyTopic: `reply/${rpcId}`,
        arrivedOn: `reply/${rpcId}`,
        topicMismatch: false,
        body: { kind: 'json', value: { id: rpcId, result: 1 } },
        result: 1,
        durationMs: 11,
        publishQos: { asked: 1, acknowledgedAs: 1 },
        subscriptionQos: { asked: 1, granted: 1 },
        warnings: [],
        verdict: told,
        ...scenario.answer.reply,
      };
    };
    const pinia = createPinia();
    setActivePinia(pinia);
    const client = fakeClient({
      ...workspace.answers,
      'app.state.get': () => state,
      'profile.list': () => [],
      'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }),
      'rpc.request.send': workspace.recording(send),
    });
    workspace.connect(client);
    const wrapper = mount(App as never, { attachTo: document.body, global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    await flushPromises();
    await wrapper.find('[data-testid=compose-send]').trigger('click');
    await flushPromises();
    client.emit('trace.steps.added', { steps: stepsOf(rpcId, scenario) });
    await flushPromises();

    const expected = VERDICT_WORDS[scenario.traced.at(-1)!];
    const compose = wrapper.find('[data-testid=compose-verdict] [data-testid=verdict-badge]').text();
    const history = wrapper.find(`[data-testid=history-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`).text();
    const list = wrapper.find(`[data-testid=trace-row][data-rpc-id="${rpcId}"] [data-testid=verdict-badge]`).text();
    useNavStore().openInTrace(rpcId);
    await flushPromises();
    const header = wrapper.find('[data-testid=trace-selected-verdict]');
    expect({ compose, history, list, header: header.exists() ? header.text() : '(no verdict in the header)' }).toEqual({ compose: expected, history: expected, list: expected, header: expected });
    // The header says the verdict, not the raw state beside it ("(replied, 11 ms)" next to "error reply").
    expect(wrapper.find('[data-testid=trace-selected] small').text()).toMatch(new RegExp(`^\\(${expected}[,)]`));
    wrapper.unmount();
  });
});
