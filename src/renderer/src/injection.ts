/** What the app provides to stores and components: the backend client and a small key-value storage. */
import { inject, type InjectionKey } from 'vue';
import type { BridgeClient } from '../../shared/contract';

export interface KeyValueStorage {
  get(key: string): string | null;
  set(key: string, value: string): void;
}

export const clientKey: InjectionKey<BridgeClient> = Symbol('bridge-client');
export const storageKey: InjectionKey<KeyValueStorage> = Symbol('key-value-storage');

export function useClient(): BridgeClient {
  const client = inject(clientKey);
  if (!client) throw new Error('No BridgeClient provided');
  return client;
}

export function useStorage(): KeyValueStorage {
  return inject(storageKey, { get: () => null, set: () => undefined });
}

/** The message of anything thrown, for the one sentence a user sees (the one helper every face uses). */
export { messageOf } from '../../shared/thrown';
