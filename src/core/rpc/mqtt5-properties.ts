/** MQTT 5 properties of a request as mqtt.js publishes them, and of a reply as the user reads them. */
import type { IClientPublishOptions, IPublishPacket } from 'mqtt';
import type { Mqtt5RequestOptions, ReplyProperties, UserProperty } from '../../shared/rpc';
import { decodeUtf8 } from './envelope';

type PublishProperties = NonNullable<IClientPublishOptions['properties']>;

/**
 * The request's properties: Response Topic (default: the reply topic) and Correlation Data (default: the RPC id), as
 * every MQTT 5 request of BridgeScope has carried, plus what the user added. A repeated user property key is kept as a
 * list (mqtt.js writes one pair per value, in order).
 */
export function mqtt5PublishProperties(id: string, replyTopic: string, options: Mqtt5RequestOptions = {}): PublishProperties {
  const properties: PublishProperties = {
    responseTopic: options.responseTopic || replyTopic,
    correlationData: Buffer.from(options.correlationData || id, 'utf8'),
  };
  if (options.messageExpirySeconds !== undefined) properties.messageExpiryInterval = options.messageExpirySeconds;
  if (options.userProperties?.length) {
    const grouped: Record<string, string | string[]> = {};
    for (const { key, value } of options.userProperties) {
      const seen = grouped[key];
      grouped[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
    }
    properties.userProperties = grouped;
  }
  return properties;
}

/** The properties a reply came with, or undefined when it had none (always so over MQTT 3.1.1). */
export function readReplyProperties(packet: IPublishPacket): ReplyProperties | undefined {
  const props = packet.properties;
  if (!props) return undefined;
  const out: ReplyProperties = {};
  if (props.userProperties) {
    const pairs: UserProperty[] = [];
    for (const [key, value] of Object.entries(props.userProperties)) {
      for (const one of Array.isArray(value) ? value : [value]) pairs.push({ key, value: String(one) });
    }
    if (pairs.length > 0) out.userProperties = pairs;
  }
  if (props.correlationData !== undefined) {
    const text = decodeUtf8(props.correlationData);
    out.correlationData = text ?? props.correlationData.toString('base64');
    out.correlationDataEncoding = text === undefined ? 'base64' : 'utf8';
  }
  if (props.responseTopic !== undefined) out.responseTopic = props.responseTopic;
  if (props.contentType !== undefined) out.contentType = props.contentType;
  if (props.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = props.payloadFormatIndicator;
  if (props.messageExpiryInterval !== undefined) out.messageExpiryInterval = props.messageExpiryInterval;
  return Object.keys(out).length > 0 ? out : undefined;
}
