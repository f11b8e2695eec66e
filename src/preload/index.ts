/** The restricted bridge between the sandboxed renderer and the main process. */
import { contextBridge } from 'electron';

contextBridge.exposeInMainWorld('bridgescope', { version: '0.1.0' });
