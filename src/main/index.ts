/** The Electron shell: one secure window, the contract bound to IPC by a loop, and a graceful quit. */
import { app, BrowserWindow, Menu, ipcMain, safeStorage, session as electronSession, type IpcMainInvokeEvent } from 'electron';
import { join } from 'node:path';
import { commandNames, type EventName, type Events } from '../shared/contract';
import { dispatch } from '../core/dispatch';
import { Session } from '../core/session';
import { memorySecretBox, profileFromEnv, ProfileStore, type SecretBox } from '../core/profiles';
import { createQuitSequence } from './quit';

let mainWindow: BrowserWindow | undefined;

/** Secrets through the OS keychain; Linux without a keyring falls back to plain text, and the UI says so. */
function osSecretBox(): SecretBox {
  if (!safeStorage.isEncryptionAvailable()) return memorySecretBox();
  const plain = process.platform === 'linux' && safeStorage.getSelectedStorageBackend() === 'basic_text';
  return {
    kind: plain ? 'plain-text' : 'os-encrypted',
    seal: (secret) => safeStorage.encryptString(secret).toString('base64'),
    open: (sealed) => safeStorage.decryptString(Buffer.from(sealed, 'base64')),
  };
}

function send<E extends EventName>(name: E, payload: Events[E]): void {
  mainWindow?.webContents.send(`bridgescope:event:${name}`, payload);
}

const rendererUrl = process.env.ELECTRON_RENDERER_URL;

/** Only our own page may call the core. */
function fromOurPage(event: IpcMainInvokeEvent): boolean {
  const url = event.senderFrame?.url ?? '';
  return rendererUrl ? url.startsWith(rendererUrl) : url.startsWith('file://');
}

function createWindow(): BrowserWindow {
  const window = new BrowserWindow({
    width: 1320,
    height: 860,
    title: 'BridgeScope',
    show: false,
    icon: join(__dirname, '../../resources/icon.png'),
    webPreferences: {
      preload: join(__dirname, '../preload/index.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webviewTag: false,
      // Middle-click would open links in new windows.
      disableBlinkFeatures: 'Auxclick',
    },
  });
  window.once('ready-to-show', () => window.show());
  // The inspector has no external links: no new windows, no navigation away.
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  window.webContents.on('will-navigate', (event) => event.preventDefault());
  if (rendererUrl) void window.loadURL(rendererUrl);
  else void window.loadFile(join(__dirname, '../renderer/index.html'));
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
    // The profile store needs safeStorage, which is ready only now.
    const session = new Session({
      mode: 'electron',
      profiles: new ProfileStore(osSecretBox(), join(app.getPath('userData'), 'profiles.json')),
      emit: send,
    });
    core = session;
    electronSession.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
    for (const name of commandNames) {
      ipcMain.handle(name, (event, args: unknown) => {
        if (!fromOurPage(event)) return { ok: false, error: { code: 'bad-input', message: 'Refused: the call did not come from the BridgeScope window.' } };
        return dispatch(session.handlers, name, args);
      });
    }
    Menu.setApplicationMenu(
      Menu.buildFromTemplate([
        ...(process.platform === 'darwin' ? [{ role: 'appMenu' as const }] : []),
        { role: 'fileMenu' },
        { role: 'editMenu' },
        { role: 'viewMenu' },
        { role: 'windowMenu' },
      ]),
    );
    mainWindow = createWindow();
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) mainWindow = createWindow();
    });
    // Straight to a working setup; a failure shows in the Connections panel.
    const configured = profileFromEnv();
    if (configured) await session.open(configured).catch(() => undefined);
    else {
      await session.startSandbox().catch(() => undefined);
      const profile = session.sandboxProfile();
      if (profile) await session.open(profile).catch(() => undefined);
    }
  });

  // Drain the embedded server, restore tracing, close the links, stop a sandbox the app started: once, bounded.
  const quit = createQuitSequence({ cleanup: () => core?.dispose() ?? Promise.resolve(), exit: (code) => app.exit(code) });
  app.on('before-quit', (event) => {
    if (quit.onBeforeQuit()) event.preventDefault();
  });
  // A terminal's Ctrl-C or a SIGTERM quits through the same sequence instead of killing the app mid-cleanup.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => app.quit());
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });
}
