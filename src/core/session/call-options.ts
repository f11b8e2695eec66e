/** How the app's Compose and Load settings become the client's call options (to be replaced by the shared src/core/rpc/call-options.ts). */
import type { SendRequestArgs } from '../../shared/contract';
import { parsePayloadText } from '../rpc/envelope';
import type { RpcCallOptions } from '../rpc/client';

export function callOptions(args: SendRequestArgs): RpcCallOptions {
  const { payload, params } = parsePayloadText(args.payloadText);
  return {
    topic: args.topic,
    qos: args.qos,
    strategy: args.strategy,
    timeoutMs: args.timeoutMs,
    ...(args.replyTopic ? { replyTopic: args.replyTopic } : {}),
    ...(args.method ? { method: args.method } : {}),
    ...(payload ? { payload } : {}),
    ...(params !== undefined ? { params } : {}),
  };
}
