/** Composing a request: the form, live mapping and lint of the topics, pre-flight checks, send, history and templates. */
import { defineStore } from 'pinia';
import { computed, reactive, ref, watch } from 'vue';
import type { SendRequestArgs, TopicMappingView } from '../../../shared/contract';
import type { CheckLine } from '../../../shared/broker';
import type { RpcOutcome } from '../../../shared/rpc';
import { hasBlockingIssue, mapTopic } from '../../../shared/topic-map';
import { messageOf, useClient, useStorage } from '../injection';
import type { Verdict } from '../../../shared/diagnosis';
import { rpcFailureOf } from '../verdicts';
import { useBusy } from './use-busy';
import { useTraceStore } from './trace';
import { timeoutProblem } from '../form-checks';
import { DEFAULT_REQUEST_TOPIC } from '../../../shared/defaults';

export interface HistoryEntry {
  request: SendRequestArgs;
  outcome?: RpcOutcome;
  error?: string;
  /** the RPC's id, to open its trace (absent when the call failed before it had one) */
  rpcId?: string;
  /** where it stopped and why: the outcome's, or the failure's */
  verdict?: Verdict;
  at: number;
}

export interface Template {
  name: string;
  request: SendRequestArgs;
}

const TEMPLATES_KEY = 'bridgescope.templates';
const HISTORY_LIMIT = 200;

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
  const storage = useStorage();
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
  const history = ref<HistoryEntry[]>([]);
  const templates = ref<Template[]>(readTemplates());
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

  function readTemplates(): Template[] {
    try {
      return JSON.parse(storage.get(TEMPLATES_KEY) ?? '[]') as Template[];
    } catch {
      return [];
    }
  }

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
    const entry: HistoryEntry = { request, at: Date.now() };
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
      Object.assign(entry, { outcome: replied, rpcId: replied.id }, replied.verdict ? { verdict: replied.verdict } : {});
    } else {
      entry.error = sending.error.value;
    }
    rpcId.value = entry.rpcId;
    verdict.value = entry.verdict;
    if (entry.rpcId !== undefined) trace.markComposed(entry.rpcId);
    history.value = [entry, ...history.value].slice(0, HISTORY_LIMIT);
  }

  function replay(entry: HistoryEntry): Promise<void> {
    Object.assign(form, { replyTopic: '', method: '' }, entry.request);
    return send(entry.request);
  }

  function saveTemplate(name: string): void {
    templates.value = [...templates.value.filter((template) => template.name !== name), { name, request: snapshot() }];
    storage.set(TEMPLATES_KEY, JSON.stringify(templates.value));
  }

  function deleteTemplate(name: string): void {
    templates.value = templates.value.filter((template) => template.name !== name);
    storage.set(TEMPLATES_KEY, JSON.stringify(templates.value));
  }

  /** Renames in place (a template already called `to` is replaced). */
  function renameTemplate(from: string, to: string): void {
    if (from === to) return;
    templates.value = templates.value.filter((template) => template.name !== to).map((template) => (template.name === from ? { ...template, name: to } : template));
    storage.set(TEMPLATES_KEY, JSON.stringify(templates.value));
  }

  function useTemplate(template: Template): void {
    Object.assign(form, { replyTopic: '', method: '' }, template.request);
  }

  return {
    form,
    snapshot,
    sending: sending.active,
    outcome,
    error: sending.error,
    rpcId,
    verdict,
    history,
    templates,
    requestMapping,
    replyMapping,
    checks,
    checksError: checking.error,
    payloadError,
    timeoutError,
    blocked,
    runChecks,
    send,
    replay,
    saveTemplate,
    deleteTemplate,
    renameTemplate,
    useTemplate,
  };
});
