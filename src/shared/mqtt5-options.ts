/** MQTT 5 options of a request: what counts as given, what is wrong with them, and what each broker version does with them. */
import { MQTT5_SINCE, noMqtt5, type BrokerRules } from './broker-versions';
import type { Mqtt5RequestOptions } from './rpc';

/** Options with nothing in them are no options: empty fields and nameless user properties are dropped. */
export function cleanMqtt5(options: Mqtt5RequestOptions | undefined): Mqtt5RequestOptions | undefined {
  if (!options) return undefined;
  const userProperties = (options.userProperties ?? []).filter((pair) => pair.key !== '');
  const cleaned: Mqtt5RequestOptions = {
    ...(userProperties.length > 0 ? { userProperties } : {}),
    ...(options.correlationData ? { correlationData: options.correlationData } : {}),
    ...(options.responseTopic ? { responseTopic: options.responseTopic } : {}),
    ...(options.messageExpirySeconds !== undefined ? { messageExpirySeconds: options.messageExpirySeconds } : {}),
  };
  return Object.keys(cleaned).length > 0 ? cleaned : undefined;
}

/** The message expiry field as typed ('' = none): one sentence when it is not a whole number of seconds MQTT can carry. */
export function expiryProblem(value: number | string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  const seconds = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(seconds) || seconds < 1) return 'The message expiry must be a whole number of seconds, at least 1 (or empty for none).';
  if (seconds > 4_294_967_295) return "The message expiry must be at most 4294967295 s (MQTT's limit).";
  return undefined;
}

/** A user property row with a value but no name cannot be sent. */
export function userPropertiesProblem(pairs: ReadonlyArray<{ key: string; value: string }>): string | undefined {
  const nameless = pairs.findIndex((pair) => pair.key.trim() === '' && pair.value !== '');
  return nameless === -1 ? undefined : `User property ${nameless + 1} has a value but no name.`;
}

export interface Mqtt5OptionRule {
  option: string;
  /** what this broker does with it, in a sentence */
  effect: string;
  honoured: boolean;
}

/**
 * What the connected broker's version does with each MQTT 5 option (docs/BROKER-VERSIONS.md): from 3.13 RabbitMQ maps
 * them to AMQP 0-9-1; 3.10-3.12 have no MQTT 5 at all. The version rules themselves come from brokerRules().
 */
export function mqtt5OptionRules(rules: BrokerRules): { summary: string; lines: Mqtt5OptionRule[] } {
  const name = rules.version ? `RabbitMQ ${rules.version.text}` : 'This broker (version unknown)';
  const honoured = rules.mqtt5;
  const summary = !rules.version
    ? `${name}: RabbitMQ ${MQTT5_SINCE} and later map these options to AMQP; older versions have no MQTT 5, and the options are then not sent.`
    : honoured
      ? `${name} speaks MQTT 5 (${MQTT5_SINCE}+) and passes these on to AMQP consumers as below.`
      : `${noMqtt5(name)}: these options are not sent, and a connection asking for MQTT 5 is refused or falls back to 3.1.1.`;
  const unknown = !rules.version;
  const effect = (yes: string): string => (honoured ? yes : unknown ? `${MQTT5_SINCE}+: ${yes}` : 'not sent (no MQTT 5)');
  return {
    summary,
    lines: [
      {
        option: 'Response topic',
        effect: effect(rules.responseTopicHeader || unknown ? 'AMQP header x-reply-to-topic, already dotted (reply_to is not set)' : 'not passed on'),
        honoured,
      },
      { option: 'Correlation data', effect: effect('AMQP correlation_id (header x-correlation-id when not a short UTF-8 string)'), honoured },
      { option: 'User properties', effect: effect('AMQP headers, one per property'), honoured },
      { option: 'Message expiry', effect: effect('a per-message TTL (AMQP expiration)'), honoured },
    ],
  };
}
