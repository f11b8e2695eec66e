/** The restricted bridge: invoke a contract command, or listen to a contract event; nothing else crosses. */
import { contextBridge, ipcRenderer } from 'electron';
// The name lists are plain constants from the pure shared contract (nothing else of shared is bundled here).
import { commandNames, eventNames } from '../shared/contract';
import type { CommandName, EventName } from '../shared/contract';

contextBridge.exposeInMainWorld('bridgescope', {
  invoke(name: CommandName, args: unknown): Promise<unknown> {
    if (!(commandNames as readonly string[]).includes(name)) return Promise.reject(new Error(`Unknown command ${String(name)}`));
    return ipcRenderer.invoke(name, args);
  },
  on(name: EventName, listener: (payload: unknown) => void): () => void {
    if (!(eventNames as readonly string[]).includes(name)) throw new Error(`Unknown event ${String(name)}`);
    // The raw Electron event never reaches the page: only the payload.
    const forward = (_event: unknown, payload: unknown): void => listener(payload);
    ipcRenderer.on(`bridgescope:event:${name}`, forward);
    return () => void ipcRenderer.removeListener(`bridgescope:event:${name}`, forward);
  },
});
