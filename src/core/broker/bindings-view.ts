/** The bindings on one exchange with each queue's consumer count: live over AMQP where it can, else the management API's (it lags ~5 s). */
import type { BindingsView } from '../../shared/contract';
import type { ManagementApi } from './management-api';

/** `liveConsumers`: a passive queue.declare per queue (see `amqpConsumerCounter`); a queue it cannot check falls back to the API's count. */
export async function bindingsView(api: ManagementApi, exchange: string, liveConsumers?: (queue: string) => Promise<number>): Promise<BindingsView> {
  const [exchangeType, bindings, queues] = await Promise.all([api.exchangeType(exchange), api.bindings(exchange), api.queues().catch(() => [])]);
  const listed = new Map(queues.map((queue) => [queue.name, queue]));
  const withConsumers = await Promise.all(
    bindings.map(async (binding) => {
      if (binding.destinationType !== 'queue') return { ...binding, consumers: null };
      const live = liveConsumers ? await liveConsumers(binding.destination).catch(() => undefined) : undefined;
      const queue = listed.get(binding.destination);
      return {
        ...binding,
        consumers: live ?? queue?.consumers ?? null,
        ...(queue?.type !== undefined ? { queueType: queue.type } : {}),
        ...(queue?.node !== undefined ? { node: queue.node } : {}),
      };
    }),
  );
  return { exchange, exchangeType, bindings: withConsumers };
}
