/** The window's options, the one page it loads, and which IPC callers count as that page: pure, so the shell's tests check them directly. */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BrowserWindowConstructorOptions } from 'electron';

/** The page the window loads: the dev server's URL under `electron-vite dev`, the built index.html otherwise. */
export type AppPage = { kind: 'url'; url: string } | { kind: 'file'; path: string; url: string };

/** `mainDir` is the folder of the built main (out/main); the preload and the renderer sit beside it. */
export function appPage(mainDir: string, devServerUrl?: string): AppPage {
  if (devServerUrl) return { kind: 'url', url: new URL(devServerUrl).href };
  const path = join(mainDir, '..', 'renderer', 'index.html');
  return { kind: 'file', path, url: pathToFileURL(path).href };
}

export function preloadPath(mainDir: string): string {
  return join(mainDir, '..', 'preload', 'index.cjs');
}

export function windowOptions(mainDir: string): BrowserWindowConstructorOptions {
  return {
    width: 1320,
    height: 860,
    title: 'BridgeScope',
    show: false,
    icon: join(mainDir, '..', '..', 'resources', 'icon.png'),
    webPreferences: {
      preload: preloadPath(mainDir),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInSubFrames: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      // Middle-click would open links in new windows.
      disableBlinkFeatures: 'Auxclick',
    },
  };
}

/** What the shell knows of an IPC caller: its frame's URL and whether that frame is the top one of our window. */
export interface IpcCaller {
  url: string | undefined;
  topFrame: boolean;
  ourWindow: boolean;
}

/** The page without its fragment (the UI may change the hash); anything unparsable matches nothing. */
function withoutHash(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    parsed.hash = '';
    return parsed.href;
  } catch {
    return undefined;
  }
}

/** Only the top frame of our window, showing exactly the page the app loaded, may call the core: not a subframe, not another file:// page. */
export function isAppPageCall(caller: IpcCaller, page: AppPage): boolean {
  if (!caller.ourWindow || !caller.topFrame || caller.url === undefined) return false;
  const url = withoutHash(caller.url);
  return url !== undefined && url === withoutHash(page.url);
}

/** The app menu: the standard roles only, the app menu on macOS. */
export function menuTemplate(platform: NodeJS.Platform): Electron.MenuItemConstructorOptions[] {
  return [
    ...(platform === 'darwin' ? [{ role: 'appMenu' as const }] : []),
    { role: 'fileMenu' },
    { role: 'editMenu' },
    { role: 'viewMenu' },
    { role: 'windowMenu' },
  ];
}

/** Where the page's documentation links may go: RabbitMQ's docs and its source at a tag. Opened in the OS browser, never in the app's window. */
const DOC_PREFIXES = ['https://www.rabbitmq.com/docs/', 'https://github.com/rabbitmq/rabbitmq-server/'];

/** Whether a link the page asked to open is a documentation link (see DOC_PREFIXES); anything unparsable is not. */
export function isDocLink(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  // Compared on the normalised URL, so no user:pass@, odd port or encoded host slips past a prefix.
  return parsed.username === '' && parsed.password === '' && DOC_PREFIXES.some((prefix) => parsed.href.startsWith(prefix));
}
