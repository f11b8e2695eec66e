/** Validation at the edge: every command's args are checked here before the core sees them (IPC and WebSocket alike). */
import { z } from 'zod';
import { REPLY_STRATEGIES } from '../shared/rpc';
import { commandNames, type CommandArgs, type CommandName } from '../shared/contract';
import { BridgeError } from './errors';
import { MAX_TIMER_MS } from '../shared/durations';
import { profileProblems } from '../shared/profile-checks';
import { payloadFormats, type PayloadFormat } from '../shared/payload-format';
import { HISTORY_LIMIT } from '../shared/workspace';

const empty = z.object({}).strict();
const nonEmpty = (what: string, max = 2000) =>
  z.string({ error: `${what} must be text.` }).trim().min(1, { error: `${what} cannot be empty.` }).max(max, { error: `${what} is too long.` });
const url = (what: string) => nonEmpty(what, 2000);

const filePath = (what: string) => z.string({ error: `${what} must be a file path.` }).max(4096, { error: `${what} is too long.` }).optional();

/** A connection profile as the contract takes it (also each profile of an imported workspace file). */
export const profileSchema = z
  .object({
    name: nonEmpty('The profile name', 100),
    amqpUrl: url('The AMQP URL'),
    mqttUrl: url('The MQTT URL'),
    managementUrl: url('The management URL'),
    vhost: z.string().min(1).max(255).default('/'),
    exchange: nonEmpty('The exchange', 255),
    mqttClientId: z.string({ error: 'The client id must be text.' }).max(1000, { error: 'The client id is too long.' }).optional(),
    username: z.string({ error: 'The user name must be text.' }).max(1000, { error: 'The user name is too long.' }).optional(),
    password: z.string({ error: 'The password must be text.' }).max(1000, { error: 'The password is too long.' }).optional(),
    tls: z
      .object({
        caFile: filePath('The CA file'),
        certFile: filePath('The client certificate file'),
        keyFile: filePath('The key file'),
        verify: z.boolean({ error: 'Verify certificate must be true or false.' }).optional(),
      })
      .optional(),
    keepaliveSeconds: z.number({ error: 'The keepalive must be a number of seconds.' }).optional(),
    cleanSession: z.boolean({ error: 'Clean session must be true or false.' }).optional(),
    mqttVersion: z.union([z.literal(4), z.literal(5), z.literal('auto')], { error: 'The MQTT version is 4 (3.1.1), 5 or auto.' }).optional(),
  })
  // The same sentences the form shows next to its fields.
  .superRefine((value, context) => {
    for (const problem of profileProblems(value)) context.addIssue({ code: 'custom', path: [problem.field], message: problem.message });
  });

export { MAX_TIMER_MS } from '../shared/durations';

/** A duration in whole ms from 1 to `maxMs` (never beyond what a timer holds). */
const durationMs = (what: string, maxMs: number, maxText: string) =>
  z
    .number({ error: `${what} must be a number of milliseconds.` })
    .int({ error: `${what} must be a whole number of milliseconds.` })
    .min(1, { error: `${what} must be at least 1 ms.` })
    .max(Math.min(maxMs, MAX_TIMER_MS), { error: `${what} must be at most ${maxText}.` });

const qos = z.union([z.literal(0), z.literal(1), z.literal(2)], { error: 'QoS must be 0, 1 or 2.' });
const strategy = z.enum(REPLY_STRATEGIES, { error: 'The reply strategy must be per-request or shared.' });
const optionalTopic = z.string().max(65_535).optional();

/** MQTT 5 strings are at most 65,535 bytes; the UI keeps them far shorter. */
const mqttString = (what: string) => z.string({ error: `${what} must be text.` }).max(65_535, { error: `${what} is too long.` });

const mqtt5 = z
  .object({
    userProperties: z
      .array(z.object({ key: nonEmpty('A user property name', 65_535), value: mqttString('A user property value') }).strict(), {
        error: 'User properties must be a list of name/value pairs.',
      })
      .max(100, { error: 'At most 100 user properties.' })
      .optional(),
    correlationData: mqttString('The correlation data').optional(),
    responseTopic: mqttString('The response topic').optional(),
    messageExpirySeconds: z
      .number({ error: 'The message expiry must be a number of seconds.' })
      .int({ error: 'The message expiry must be a whole number of seconds.' })
      .min(1, { error: 'The message expiry must be at least 1 s.' })
      .max(4_294_967_295, { error: 'The message expiry must be at most 4294967295 s (MQTT\'s limit).' })
      .optional(),
  })
  .strict();

/** A Compose request (also each one kept in the history file and in templates). */
export const sendRequestSchema = z.object({
  topic: nonEmpty('The request topic', 65_535),
  qos,
  strategy,
  replyTopic: optionalTopic,
  method: z.string().max(1000).optional(),
  payloadText: z.string().max(64 * 1024 * 1024, { error: 'The payload is over 64 MiB.' }),
  payloadFormat: z.enum(payloadFormats as [PayloadFormat, ...PayloadFormat[]], { error: 'The payload format is json, text, hex, base64 or file.' }).optional(),
  payloadFileName: z.string().max(1000).optional(),
  mqtt5: mqtt5.optional(),
  timeoutMs: durationMs('The timeout', 600_000, '10 minutes'),
});

export const templateName = nonEmpty('The template name', 100);
/** A saved Compose request under its name. */
export const templateSchema = z.object({ name: templateName, request: sendRequestSchema });

/** Each command's schema, typed against its argument type: a schema that drifts from the contract does not compile. */
type Schemas = { [K in CommandName]: z.ZodType<CommandArgs<K>> };

const schemas: Schemas = {
  'app.state.get': empty,
  'broker.sandbox.start': empty,
  'broker.sandbox.stop': empty,
  'connection.open': z.object({ profile: profileSchema }),
  'connection.close': empty,
  'connection.test': z.object({ profile: profileSchema }),
  'profile.list': empty,
  'profile.save': z.object({ profile: profileSchema }),
  'profile.delete': z.object({ name: nonEmpty('The profile name', 100) }),
  'profile.load': z.object({ name: nonEmpty('The profile name', 100) }),
  'server.start': z.object({
    exchange: nonEmpty('The exchange', 255),
    queue: nonEmpty('The queue', 255),
    workers: z.number().int().min(1, { error: 'At least 1 worker.' }).max(64, { error: 'At most 64 workers.' }),
    prefetch: z.number().int().min(1).max(65_535, { error: 'The prefetch must be from 1 to 65535.' }),
    handler: nonEmpty('The handler', 1000),
    queueType: z.enum(['classic', 'quorum'], { error: 'The queue type is classic or quorum.' }).optional(),
  }),
  'server.stop': empty,
  'rpc.request.send': sendRequestSchema,
  'rpc.preflight.run': z.object({
    topic: nonEmpty('The request topic', 65_535),
    strategy,
    replyTopic: optionalTopic,
    qos: qos.optional(),
    payloadText: sendRequestSchema.shape.payloadText.optional(),
    payloadFormat: sendRequestSchema.shape.payloadFormat,
  }),
  'topic.mapping.get': z.object({ topic: z.string().max(65_535), role: z.enum(['publish', 'reply', 'filter']) }),
  'broker.bindings.list': z.object({ exchange: nonEmpty('The exchange', 255) }),
  'broker.probe.run': empty,
  'trace.tracing.set': z.object({ on: z.boolean({ error: 'on must be true or false.' }) }),
  'trace.snapshot.get': empty,
  'trace.export.create': empty,
  'trace.import.load': z.object({ trace: z.unknown() }),
  'trace.store.clear': empty,
  'load.run.start': sendRequestSchema.extend({
    count: z.number().int().min(1, { error: 'Send at least 1 request.' }).max(1_000_000, { error: 'At most 1,000,000 requests per run.' }),
    concurrency: z.number().int().min(1, { error: 'Concurrency must be at least 1.' }).max(10_000, { error: 'Concurrency must be at most 10,000.' }),
    traceEvery: z.number().int().min(1, { error: 'Trace every: at least 1 (1 keeps every request).' }).max(10_000, { error: 'Trace every: at most 10,000.' }).optional(),
  }),
  'load.run.cancel': empty,
  'load.run.last': empty,
  'workspace.history.list': z.object({
    search: z.string().max(1000, { error: 'The search is too long.' }).optional(),
    limit: z.number().int().min(1).max(HISTORY_LIMIT).optional(),
  }),
  'workspace.history.delete': z.object({ id: nonEmpty('The entry id', 200) }),
  'workspace.history.clear': empty,
  'workspace.templates.list': empty,
  'workspace.template.save': z.object({ template: templateSchema }),
  'workspace.template.rename': z.object({ from: templateName, to: templateName }),
  'workspace.template.delete': z.object({ name: templateName }),
  'workspace.export.create': z.object({ includePasswords: z.boolean({ error: 'includePasswords must be true or false.' }) }),
  'workspace.import.load': z.object({ file: z.unknown() }),
  'watch.start': z
    .object({
      mode: z.enum(['tap', 'firehose'], { error: 'The watch mode is tap or firehose.' }),
      timeoutMs: durationMs('The watch timeout', 600_000, '10 minutes'),
      requestKeys: z
        .array(nonEmpty('A request key', 255), { error: 'The request keys must be a list of routing keys.' })
        .min(1, { error: 'Watch at least one request key.' })
        .max(100, { error: 'At most 100 request keys.' }),
    })
    .strict(),
  'watch.stop': empty,
  'watch.snapshot.get': empty,
  'watch.rpc.open': z.object({ key: nonEmpty('The watched RPC key', 400) }).strict(),
  'otel.export.get': empty,
  'otel.export.set': z
    .object({
      url: z.union([
        z.null(),
        nonEmpty('The OTLP URL', 2000).refine((text) => /^https?:\/\/[^\s/]+/i.test(text) && URL.canParse(text), {
          error: 'The OTLP URL must be an http:// or https:// URL (OTLP over HTTP, e.g. http://localhost:4318).',
        }),
      ]),
    })
    .strict(),
};

/** Checks a command's args as they arrived from outside; one sentence when they are wrong. */
export function validateArgs<K extends CommandName>(name: K, args: unknown): CommandArgs<K> {
  // The name comes from outside too: typed or not, an unknown one is refused before any lookup.
  if (!isCommandName(name)) throw new BridgeError('bad-input', `"${String(name)}" is not a BridgeScope command.`);
  const schema: z.ZodType<CommandArgs<K>> = schemas[name];
  const parsed = schema.safeParse(args ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new BridgeError('bad-input', `${name}: ${where}${issue?.message ?? 'invalid arguments'}`);
  }
  return parsed.data;
}

const knownCommands: ReadonlySet<string> = new Set(commandNames);

/** Whether a name from outside is a command of the contract (the runtime list `commandNames`, nothing else). */
export function isCommandName(name: unknown): name is CommandName {
  return typeof name === 'string' && knownCommands.has(name);
}
