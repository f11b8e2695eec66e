/** The Electron shell: one secure window, the contract bound to IPC by a loop, and a graceful quit. The decisions live in window.ts, secrets.ts and quit.ts. */
import { app, BrowserWindow, Menu, ipcMain, safeStorage, session as electronSession, shell, type IpcMainInvokeEvent } from 'electron';
import { join } from 'node:path';
import { commandNames, type EventName, type Events } from '../shared/contract';
import { dispatch } from '../core/dispatch';
import { Session } from '../core/session/session';
import { profileFromEnv, ProfileStore } from '../core/profiles';
import { WorkspaceStore } from '../core/workspace-file';
import { otelExportFor, type OtelExport } from '../core/otel/export';
import { tightenHeapGrowth } from '../core/heap-growth';
import { createQuitSequence } from './quit';
import { osSecretBox } from './secrets';
import { appPage, isAppPageCall, isDocLink, menuTemplate, windowOptions } from './window';

let mainWindow: BrowserWindow | undefined;
// The dev server's URL counts only when running from the sources: an installed app always loads its own file.
const page = appPage(__dirname, app.isPackaged ? undefined : process.env.ELECTRON_RENDERER_URL);

function send<E extends EventName>(name: E, payload: Events[E]): void {
  mainWindow?.webContents.send(`bridgescope:event:${name}`, payload);
}

// A frame that navigated away (detached) or is gone (null) may show another page by now: refused.
function fromOurPage(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return isAppPageCall({ url: frame?.url, topFrame: frame !== null && frame.parent === null && !frame.detached, ourWindow: mainWindow !== undefined && event.sender === mainWindow.webContents }, page);
}

function createWindow(): BrowserWindow {
  const window = new BrowserWindow(windowOptions(__dirname));
  window.once('ready-to-show', () => window.show());
  // No new windows, no navigation away: a documentation link (RabbitMQ's docs and source) opens in the OS browser.
  window.webContents.setWindowOpenHandler(({ url }) => {
    if (isDocLink(url)) void shell.openExternal(url).catch(() => undefined);
    return { action: 'deny' };
  });
  window.webContents.on('will-navigate', (event) => event.preventDefault());
  window.webContents.on('will-attach-webview', (event) => event.preventDefault());
  if (page.kind === 'url') void window.loadURL(page.url);
  else void window.loadFile(page.path);
  return window;
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  let core: Session | undefined;
  app.on('second-instance', () => {
    if (mainWindow?.isMinimized()) mainWindow.restore();
    mainWindow?.focus();
  });

  void app.whenReady().then(async () => {
    // The main process holds the session for hours, as the `ui` host does: its heap is kept near what is live.
    tightenHeapGrowth();
    // The profile store needs safeStorage, which is ready only now.
    const session = new Session({
      mode: 'electron',
      profiles: new ProfileStore(osSecretBox(safeStorage, process.platform), join(app.getPath('userData'), 'profiles.json')),
      emit: send,
      // History and templates last in the same folder as the profiles.
      workspace: new WorkspaceStore({ dir: app.getPath('userData') }),
      // OpenTelemetry export only when asked: BRIDGESCOPE_OTLP_URL (a collector, e.g. http://localhost:4318) and/or BRIDGESCOPE_OTLP_FILE.
      ...otelFromEnv(),
    });
    core = session;
    electronSession.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
    electronSession.defaultSession.setPermissionCheckHandler(() => false);
    for (const name of commandNames) {
      ipcMain.handle(name, (event, args: unknown) => {
        if (!fromOurPage(event)) return { ok: false, error: { code: 'bad-input', message: 'Refused: the call did not come from the BridgeScope window.' } };
        return dispatch(session.handlers, name, args);
      });
    }
    Menu.setApplicationMenu(Menu.buildFromTemplate(menuTemplate(process.platform)));
    mainWindow = createWindow();
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) mainWindow = createWindow();
    });
    // Straight to a working setup; a failure shows in the Connections panel.
    const configured = profileFromEnv(process.env, (sentence) => console.warn(sentence));
    if (configured) await session.open(configured).catch(() => undefined);
    else {
      await session.startSandbox().catch(() => undefined);
      const profile = session.sandboxProfile();
      if (profile) await session.open(profile).catch(() => undefined);
    }
  });

  // Drain the embedded server, restore tracing, close the links, stop a sandbox the app started: once, bounded.
  const quit = createQuitSequence({ cleanup: () => core?.shutdown() ?? Promise.resolve(), exit: (code) => app.exit(code) });
  app.on('before-quit', (event) => {
    if (quit.onBeforeQuit()) event.preventDefault();
  });
  // A terminal's Ctrl-C or a SIGTERM quits through the same sequence instead of killing the app mid-cleanup.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => app.quit());
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });
}

/** The app's OpenTelemetry setting, from the environment; a bad URL is said once on stderr and nothing is exported. */
function otelFromEnv(): { otel?: OtelExport } {
  const url = process.env.BRIDGESCOPE_OTLP_URL?.trim() || undefined;
  const file = process.env.BRIDGESCOPE_OTLP_FILE?.trim() || undefined;
  try {
    const otel = otelExportFor({ ...(url ? { otlp: url } : {}), ...(file ? { otlpFile: file } : {}) }, 'bridgescope-app');
    return otel ? { otel } : {};
  } catch (err) {
    process.stderr.write(`BridgeScope: BRIDGESCOPE_OTLP_URL/FILE not used: ${(err as Error).message}\n`);
    return {};
  }
}
