/** A BridgeClient for store and component tests: answers from a table, emits events on demand. */
import { createApp, type App } from 'vue';
import { createPinia, setActivePinia } from 'pinia';
import type { BridgeClient, CommandArgs, CommandName, CommandResult, EventName, Events } from '../../src/shared/contract';
import { clientKey } from '../../src/renderer/src/injection';

type Answers = { [K in CommandName]?: (args: CommandArgs<K>) => CommandResult<K> | Promise<CommandResult<K>> };

export function fakeClient(answers: Answers): BridgeClient & { emit<E extends EventName>(name: E, payload: Events[E]): void; calls: string[] } {
  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  const calls: string[] = [];
  return {
    calls,
    async invoke<K extends CommandName>(name: K, args: CommandArgs<K>): Promise<CommandResult<K>> {
      calls.push(name);
      const answer = answers[name] as ((args: CommandArgs<K>) => CommandResult<K>) | undefined;
      if (!answer) throw new Error(`unexpected ${name}`);
      return answer(args);
    },
    on(name, listener) {
      const set = listeners.get(name) ?? new Set();
      set.add(listener as (payload: unknown) => void);
      listeners.set(name, set);
      return () => void set.delete(listener as (payload: unknown) => void);
    },
    emit(name, payload) {
      for (const listener of listeners.get(name) ?? []) listener(payload);
    },
  };
}

/** An app with the client provided and Pinia active: stores run inside its context, as in the real renderer. */
export function appWith(client: ReturnType<typeof fakeClient>): App {
  const app = createApp({});
  const pinia = createPinia();
  app.provide(clientKey, client);
  app.use(pinia);
  setActivePinia(pinia);
  return app;
}
