/** One invoke, whatever the transport: validate the args, run the handler, and always answer with data. */
import type { CommandName, Handlers, InvokeReply } from '../shared/contract';
import { isCommandName, validateArgs } from './contract-schemas';
import { toErrorShape } from './errors';

export async function dispatch(handlers: Handlers, name: unknown, rawArgs: unknown): Promise<InvokeReply<CommandName>> {
  if (!isCommandName(name)) {
    return { ok: false, error: { code: 'bad-input', message: `"${String(name).slice(0, 80)}" is not a BridgeScope command.` } };
  }
  try {
    const args = validateArgs(name, rawArgs);
    const handler = handlers[name] as (args: unknown) => Promise<unknown>;
    const result = await handler(args);
    return { ok: true, result } as InvokeReply<CommandName>;
  } catch (err) {
    return { ok: false, error: toErrorShape(err) };
  }
}
