/** Composing a request: the form, live mapping and lint of the topics, pre-flight checks, send (history and templates: stores/history.ts). */
import { defineStore } from 'pinia';
import { computed, reactive, ref, watch } from 'vue';
import type { SendRequestArgs, TopicMappingView } from '../../../shared/contract';
import type { CheckLine } from '../../../shared/broker';
import type { RpcOutcome } from '../../../shared/rpc';
import { hasBlockingIssue, mapTopic } from '../../../shared/topic-map';
import { messageOf, useClient } from '../injection';
import type { Verdict } from '../../../shared/diagnosis';
import { rpcFailureOf } from '../verdicts';
import { useBusy } from './use-busy';
import { useTraceStore } from './trace';
import { timeoutProblem } from '../form-checks';
import { DEFAULT_REQUEST_TOPIC } from '../../../shared/defaults';

/** Validates the payload box as the user types: empty is fine, otherwise it must be JSON. */
export function payloadProblem(text: string): string | undefined {
  if (text.trim() === '') return undefined;
  try {
    JSON.parse(text);
    return undefined;
  } catch (err) {
    return `Not valid JSON: ${messageOf(err)}`;
  }
}

export const useComposeStore = defineStore('compose', () => {
  const client = useClient();
  const trace = useTraceStore();
  const form = reactive<SendRequestArgs>({
    topic: DEFAULT_REQUEST_TOPIC,
    qos: 1,
    strategy: 'per-request',
    replyTopic: '',
    method: '',
    payloadText: '{\n  "params": {"hello": "device"}\n}',
    timeoutMs: 5000,
  });
  const sending = useBusy();
  const outcome = ref<RpcOutcome>();
  /** the last send's RPC id and verdict, whether it replied or failed */
  const rpcId = ref<string>();
  const verdict = ref<Verdict>();
  // Computed here, on every keystroke, by the same pure module the core uses: no round trip to the backend.
  const requestMapping = computed<TopicMappingView>(() => mapTopic(form.topic, 'publish'));
  const replyMapping = computed<TopicMappingView | undefined>(() => (form.replyTopic ? mapTopic(form.replyTopic, 'reply') : undefined));
  const checks = ref<CheckLine[]>([]);
  const checking = useBusy();

  const payloadError = computed(() => payloadProblem(form.payloadText));
  // v-model.number leaves '' in the field when it is emptied: a sentence next to it, and no send.
  const timeoutError = computed(() => timeoutProblem(form.timeoutMs as number | string));
  const blocked = computed(
    () =>
      payloadError.value !== undefined ||
      timeoutError.value !== undefined ||
      hasBlockingIssue(requestMapping.value.issues) ||
      hasBlockingIssue(replyMapping.value?.issues ?? []),
  );

  // Pre-flight results are about one topic, reply topic and strategy: changing any of them makes them stale.
  watch(
    () => [form.topic, form.replyTopic, form.strategy],
    () => {
      checks.value = [];
    },
  );

  function snapshot(): SendRequestArgs {
    return {
      topic: form.topic,
      qos: form.qos,
      strategy: form.strategy,
      timeoutMs: form.timeoutMs,
      payloadText: form.payloadText,
      ...(form.replyTopic ? { replyTopic: form.replyTopic } : {}),
      ...(form.method ? { method: form.method } : {}),
    };
  }

  async function runChecks(): Promise<void> {
    await checking.run(async () => {
      checks.value = await client.invoke('rpc.preflight.run', {
        topic: form.topic,
        strategy: form.strategy,
        ...(form.replyTopic ? { replyTopic: form.replyTopic } : {}),
      });
    }, 'Checking');
  }

  async function send(request: SendRequestArgs = snapshot()): Promise<void> {
    if (sending.active.value || blocked.value) return;
    // The result area shows the last send's result: a new send starts from nothing.
    outcome.value = undefined;
    rpcId.value = undefined;
    verdict.value = undefined;
    // The core records the send in the history when it settles; the page only shows the result.
    const entry: { rpcId?: string; verdict?: Verdict } = {};
    trace.composePending = true;
    const replied = await sending.run(async () => {
      try {
        return await client.invoke('rpc.request.send', request);
      } catch (err) {
        Object.assign(entry, rpcFailureOf(err));
        throw err;
      } finally {
        trace.composePending = false;
      }
    }, 'Waiting for the reply');
    if (replied) {
      outcome.value = replied;
      // A reply proves what a failed pre-flight said: its FAIL lines would now contradict the result shown below them.
      if (checks.value.some((line) => line.status !== 'pass')) checks.value = [];
      Object.assign(entry, { rpcId: replied.id }, replied.verdict ? { verdict: replied.verdict } : {});
    }
    rpcId.value = entry.rpcId;
    verdict.value = entry.verdict;
    if (entry.rpcId !== undefined) trace.markComposed(entry.rpcId);
  }

  /** Fills the form with a request (a template, or a history entry to replay). */
  function fill(request: SendRequestArgs): void {
    Object.assign(form, { replyTopic: '', method: '' }, request);
  }

  return {
    form,
    snapshot,
    sending: sending.active,
    outcome,
    error: sending.error,
    rpcId,
    verdict,
    requestMapping,
    replyMapping,
    checks,
    checksError: checking.error,
    payloadError,
    timeoutError,
    blocked,
    runChecks,
    send,
    fill,
  };
});
