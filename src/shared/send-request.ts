/** What the user asks to send: topic, QoS, reply strategy, the body in its format, MQTT 5 properties, the timeout. */
import type { PayloadFormat } from './payload-format';
import type { Mqtt5RequestOptions, QoS, ReplyStrategy } from './rpc';

export interface SendRequestArgs {
  topic: string;
  qos: QoS;
  strategy: ReplyStrategy;
  replyTopic?: string;
  method?: string;
  /**
   * The body as the user gave it, read per `payloadFormat`: JSON text of the request body or params (id and reply_to
   * added), plain text, hex digits, or base64 (a file's bytes travel as base64); only JSON is changed before sending.
   */
  payloadText: string;
  /** default 'json' */
  payloadFormat?: PayloadFormat;
  /** the file's name, for the 'file' format (shown, never read by the core) */
  payloadFileName?: string;
  /** MQTT 5 properties of the request; sent only when the connection speaks MQTT 5, else a warning says they were not */
  mqtt5?: Mqtt5RequestOptions;
  timeoutMs: number;
}
