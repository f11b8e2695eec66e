/** What a template row says beside its name: what sets it apart from the other templates, not the same topic and QoS on every row. */
import type { SendRequestArgs } from '../../shared/contract';

/** The fields a row may name, in the order they are said. */
const FIELDS: Array<{ key: string; of: (request: SendRequestArgs) => string | undefined }> = [
  { key: 'topic', of: (request) => request.topic },
  { key: 'method', of: (request) => (request.method ? `method ${request.method}` : undefined) },
  { key: 'qos', of: (request) => `QoS ${request.qos}` },
  { key: 'strategy', of: (request) => (request.strategy === 'shared' ? 'shared reply' : 'per-request reply') },
  { key: 'reply', of: (request) => (request.replyTopic ? `reply on ${request.replyTopic}` : undefined) },
  { key: 'format', of: (request) => (request.payloadFormat && request.payloadFormat !== 'json' && request.payloadFormat !== 'file' ? request.payloadFormat : undefined) },
  { key: 'timeout', of: (request) => `timeout ${request.timeoutMs} ms` },
];

const BODY_CHARS = 40;

/** The body, on one line and cut: `{"params":{"delay":3}}`; a file by its name. */
function bodyOf(request: SendRequestArgs): string {
  if (request.payloadFormat === 'file') return request.payloadFileName ? `file ${request.payloadFileName}` : 'a file';
  const line = request.payloadText.replace(/\s+/g, ' ').trim();
  if (line === '') return 'empty body';
  return line.length > BODY_CHARS ? `${line.slice(0, BODY_CHARS - 1)}…` : line;
}

/**
 * One line per template: the fields whose values differ between the templates (all of the set ones when there is only
 * one), then the body. The topic is said whenever any template has another one.
 */
export function templateSummaries(requests: readonly SendRequestArgs[]): string[] {
  const differing = FIELDS.filter((field) => requests.length === 1 || new Set(requests.map((request) => field.of(request) ?? '')).size > 1);
  const alone = requests.length === 1;
  return requests.map((request) => {
    const parts = differing.flatMap((field) => {
      const value = field.of(request);
      // Alone, a row does not recite the defaults (QoS 1, per-request, 5000 ms): only what was set.
      if (value === undefined || (alone && ['qos', 'strategy', 'timeout'].includes(field.key) && isDefault(field.key, request))) return [];
      return [value];
    });
    return [...parts, bodyOf(request)].join(' · ');
  });
}

function isDefault(key: string, request: SendRequestArgs): boolean {
  if (key === 'qos') return request.qos === 1;
  if (key === 'strategy') return request.strategy !== 'shared';
  return request.timeoutMs === 5000;
}
