/** Composing a request: the form, live mapping and lint of the topics, pre-flight checks, send (history and templates: stores/history.ts). */
import { defineStore } from 'pinia';
import { computed, reactive, ref, watch } from 'vue';
import type { SendRequestArgs, TopicMappingView } from '../../../shared/contract';
import type { CheckLine } from '../../../shared/broker';
import type { RpcOutcome, UserProperty } from '../../../shared/rpc';
import { MAX_FILE_PAYLOAD_BYTES, convertPayload, encodeBase64, fileTooLarge, payloadProblem as formatProblem, type PayloadFormat } from '../../../shared/payload-format';
import { cleanMqtt5, expiryProblem, mqtt5OptionRules, userPropertiesProblem } from '../../../shared/mqtt5-options';
import { brokerRules } from '../../../shared/broker-versions';
import { useAppStore } from './app';
import { hasBlockingIssue, mapTopic } from '../../../shared/topic-map';
import { messageOf, useClient } from '../injection';
import type { Verdict } from '../../../shared/diagnosis';
import { rpcFailureOf } from '../verdicts';
import { useBusy } from './use-busy';
import { useTraceViewStore } from './trace-view';
import { timeoutProblem } from '../form-checks';
import { DEFAULT_CALL_REPLY_STRATEGY, DEFAULT_REQUEST_TOPIC } from '../../../shared/defaults';
import { bodyNotKeptProblem } from '../../../shared/workspace';

/** Validates the payload box as the user types, per its format: empty JSON is fine, hex and base64 must decode. */
export function payloadProblem(text: string, format: PayloadFormat = 'json'): string | undefined {
  return formatProblem(format, text);
}

/** The MQTT 5 part of the form as typed: the expiry field is '' when empty. */
export interface Mqtt5Form {
  userProperties: UserProperty[];
  correlationData: string;
  responseTopic: string;
  messageExpirySeconds: number | '';
}

/** The form: the request as typed, with its format and MQTT 5 options always present (the snapshot drops what is empty). */
export type ComposeForm = Required<Pick<SendRequestArgs, 'payloadFormat' | 'payloadFileName'>> & Omit<SendRequestArgs, 'mqtt5' | 'payloadFormat' | 'payloadFileName'> & { mqtt5: Mqtt5Form };

const emptyMqtt5 = (): Mqtt5Form => ({ userProperties: [], correlationData: '', responseTopic: '', messageExpirySeconds: '' });

/** What a saved or replayed request leaves unsaid is the default, not whatever the form held before. */
function formFrom(request: SendRequestArgs): Partial<ComposeForm> {
  const { mqtt5, ...rest } = request;
  return {
    replyTopic: '',
    method: '',
    payloadFormat: 'json',
    payloadFileName: '',
    ...rest,
    mqtt5: {
      ...emptyMqtt5(),
      ...mqtt5,
      userProperties: (mqtt5?.userProperties ?? []).map((pair) => ({ ...pair })),
      messageExpirySeconds: mqtt5?.messageExpirySeconds ?? '',
    },
  };
}

export const useComposeStore = defineStore('compose', () => {
  const client = useClient();
  const trace = useTraceViewStore();
  const app = useAppStore();
  const form = reactive<ComposeForm>({
    topic: DEFAULT_REQUEST_TOPIC,
    qos: 1,
    strategy: DEFAULT_CALL_REPLY_STRATEGY,
    replyTopic: '',
    method: '',
    payloadText: '{\n  "params": {"hello": "device"}\n}',
    payloadFormat: 'json',
    payloadFileName: '',
    mqtt5: emptyMqtt5(),
    timeoutMs: 5000,
  });
  /** what each format's box held, so switching formats back and forth loses nothing typed */
  const textByFormat: Partial<Record<PayloadFormat, string>> = {};
  const fileError = ref<string>();
  /** a replayed entry whose body the history did not keep: said until a body is given */
  const bodyMissing = ref<string>();
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
  /** where the form was filled from ("the history", "the template X"), said next to Send until it is pressed */
  const filledFrom = ref<string>();

  const payloadError = computed(() => fileError.value ?? bodyMissing.value ?? payloadProblem(form.payloadText, form.payloadFormat));
  // Synchronous: fill() sets the sentence right after it changes the body, and only a later change may clear it.
  watch(
    () => [form.payloadText, form.payloadFormat],
    () => (bodyMissing.value = undefined),
    { flush: 'sync' },
  );
  const expiryError = computed(() => expiryProblem(form.mqtt5.messageExpirySeconds));
  const userPropertiesError = computed(() => userPropertiesProblem(form.mqtt5.userProperties));
  /** the connected broker's version rules for MQTT 5 (AppState.overview), and whether the last request went out over MQTT 5 */
  const mqtt5Rules = computed(() => mqtt5OptionRules(brokerRules(app.state?.overview?.rabbitmqVersion)));
  /**
   * Why the MQTT 5 options are folded ('' when they are sent). Open only where MQTT 5 is spoken: the open profile asks
   * for MQTT 5 or auto (unset is 3.1.1), the broker is a known 3.13+, and the last reply did not come over 3.1.1.
   */
  const mqtt5Folded = computed(() => {
    const profile = app.state?.profile;
    if (profile && (profile.mqttVersion ?? 4) === 4) return '(this connection speaks MQTT 3.1.1: set MQTT 5 or auto in the profile)';
    return brokerRules(app.state?.overview?.rabbitmqVersion).mqtt5 && outcome.value?.mqttVersion !== 4 ? '' : '(not sent over MQTT 3.1.1)';
  });
  const mqtt5Available = computed(() => mqtt5Folded.value === '');
  // v-model.number leaves '' in the field when it is emptied: a sentence next to it, and no send.
  const timeoutError = computed(() => timeoutProblem(form.timeoutMs as number | string));
  const blocked = computed(
    () =>
      payloadError.value !== undefined ||
      timeoutError.value !== undefined ||
      expiryError.value !== undefined ||
      userPropertiesError.value !== undefined ||
      hasBlockingIssue(requestMapping.value.issues) ||
      hasBlockingIssue(replyMapping.value?.issues ?? []),
  );

  // Pre-flight results are about one topic, reply topic, strategy, QoS and payload (the version rules read the last two):
  // changing any of them makes them stale (a QoS 2 warning must not stay once QoS is back to 1).
  watch(
    () => [form.topic, form.replyTopic, form.strategy, form.qos, form.payloadText, form.payloadFormat],
    () => {
      checks.value = [];
    },
  );

  function snapshot(): SendRequestArgs {
    const expiry = form.mqtt5.messageExpirySeconds;
    const mqtt5 = cleanMqtt5({
      userProperties: form.mqtt5.userProperties.map((pair) => ({ key: pair.key.trim(), value: pair.value })),
      correlationData: form.mqtt5.correlationData,
      responseTopic: form.mqtt5.responseTopic,
      ...(typeof expiry === 'number' ? { messageExpirySeconds: expiry } : {}),
    });
    return {
      topic: form.topic,
      qos: form.qos,
      strategy: form.strategy,
      timeoutMs: form.timeoutMs,
      payloadText: form.payloadText,
      ...(form.payloadFormat !== 'json' ? { payloadFormat: form.payloadFormat } : {}),
      ...(form.payloadFormat === 'file' && form.payloadFileName ? { payloadFileName: form.payloadFileName } : {}),
      ...(form.replyTopic ? { replyTopic: form.replyTopic } : {}),
      ...(form.method ? { method: form.method } : {}),
      ...(mqtt5 ? { mqtt5 } : {}),
    };
  }

  /**
   * Switches the payload's format: the same bytes in the new notation (JSON or text to hex shows the text's UTF-8 bytes,
   * hex back to text the text). Where they cannot be (bytes that are not UTF-8 shown as text, a file), what the box held
   * last in that format comes back, as when each format kept its own text.
   */
  function setPayloadFormat(format: PayloadFormat): void {
    if (format === form.payloadFormat) return;
    textByFormat[form.payloadFormat] = form.payloadText;
    const converted = format === 'file' ? undefined : convertPayload(form.payloadFormat, format, form.payloadText);
    form.payloadFormat = format;
    form.payloadText = converted ?? textByFormat[format] ?? '';
    if (format !== 'file') fileError.value = undefined;
  }

  /** A file picked in the browser: its bytes, read here, travel as base64; over the cap, a sentence and nothing kept. */
  async function loadPayloadFile(file: { name: string; size: number; arrayBuffer(): Promise<ArrayBuffer> }): Promise<void> {
    setPayloadFormat('file');
    if (file.size > MAX_FILE_PAYLOAD_BYTES) {
      fileError.value = fileTooLarge(file.size);
      form.payloadText = '';
      form.payloadFileName = '';
      return;
    }
    try {
      form.payloadText = encodeBase64(new Uint8Array(await file.arrayBuffer()));
      form.payloadFileName = file.name;
      fileError.value = undefined;
    } catch (err) {
      fileError.value = `The file ${file.name} could not be read: ${messageOf(err)}`;
      form.payloadText = '';
      form.payloadFileName = '';
    }
  }

  function addUserProperty(): void {
    form.mqtt5.userProperties.push({ key: '', value: '' });
  }

  function removeUserProperty(index: number): void {
    form.mqtt5.userProperties.splice(index, 1);
  }

  /**
   * Fills the form with a saved or past request; what it does not say goes back to the default. A history entry whose
   * body was too big to keep (`bodyNotKept`, its size) leaves the body empty and blocks the send with a sentence.
   */
  function fill(request: SendRequestArgs, bodyNotKept?: number, from?: string): void {
    fileError.value = undefined;
    filledFrom.value = from;
    Object.assign(form, formFrom(request));
    bodyMissing.value = bodyNotKept === undefined ? undefined : bodyNotKeptProblem(request, bodyNotKept);
  }

  async function runChecks(): Promise<void> {
    await checking.run(async () => {
      checks.value = await client.invoke('rpc.preflight.run', {
        topic: form.topic,
        strategy: form.strategy,
        // QoS and size: the broker version's rules (QoS 2 granted as 1, the maximum packet size) are about them
        qos: form.qos,
        payloadText: form.payloadText,
        payloadFormat: form.payloadFormat,
        ...(form.replyTopic ? { replyTopic: form.replyTopic } : {}),
      });
    }, 'Checking');
  }

  async function send(request: SendRequestArgs = snapshot()): Promise<void> {
    if (sending.active.value || blocked.value) return;
    // The result area shows the last send's result: a new send starts from nothing.
    filledFrom.value = undefined;
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
    expiryError,
    userPropertiesError,
    mqtt5Rules,
    mqtt5Available,
    mqtt5Folded,
    setPayloadFormat,
    loadPayloadFile,
    addUserProperty,
    removeUserProperty,
    blocked,
    filledFrom,
    runChecks,
    send,
    fill,
  };
});
