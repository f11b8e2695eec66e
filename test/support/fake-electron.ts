/**
 * A stand-in for the `electron` module, so the built shell (out/main/index.js, out/preload/index.cjs) runs in plain Node:
 * it records what the shell asks of Electron and lets a test play the user's and the OS's part (ready, a second
 * instance, a quit, an IPC call from some frame).
 */
import { EventEmitter } from 'node:events';
import { pathToFileURL } from 'node:url';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- listeners of any Electron event
type Listener = (...args: any[]) => void;

export interface FakeFrame {
  url: string;
  parent: FakeFrame | null;
  /** a frame that navigated cross-origin and is being torn down */
  detached?: boolean;
}

export class FakeWebContents extends EventEmitter {
  readonly mainFrame: FakeFrame = { url: '', parent: null, detached: false };
  readonly sent: { channel: string; payload: unknown }[] = [];
  windowOpenHandler: ((details: { url: string }) => { action: string }) | undefined;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: string }): void {
    this.windowOpenHandler = handler;
  }
  send(channel: string, payload: unknown): void {
    this.sent.push({ channel, payload });
  }
}

export class FakeEvent {
  defaultPrevented = false;
  preventDefault(): void {
    this.defaultPrevented = true;
  }
}

export interface FakeSafeStorage {
  available: boolean;
  backend: string;
}

/** One run of the app: a fresh fake per test. */
export class FakeElectron {
  readonly appEvents = new EventEmitter();
  readonly handlers = new Map<string, (event: unknown, ...args: unknown[]) => unknown>();
  readonly windows: FakeBrowserWindowLike[] = [];
  readonly exits: number[] = [];
  quits = 0;
  singleInstanceLock = true;
  /** true as in an installed app, false as under `electron .` or `electron-vite dev` */
  packaged = false;
  userData = '';
  permissionRequestHandler: ((contents: unknown, permission: string, callback: (granted: boolean) => void) => void) | undefined;
  permissionCheckHandler: ((...args: unknown[]) => boolean) | undefined;
  applicationMenu: unknown;
  /** the URLs the shell handed to the OS browser (shell.openExternal) */
  readonly openedExternally: string[] = [];
  readonly safeStorage: FakeSafeStorage = { available: true, backend: 'gnome_libsecret' };
  private readyResolve!: () => void;
  private readonly ready = new Promise<void>((resolve) => (this.readyResolve = resolve));
  private windowCreated!: (window: FakeBrowserWindowLike) => void;
  /** resolves with the first window the shell opens */
  readonly firstWindow = new Promise<FakeBrowserWindowLike>((resolve) => (this.windowCreated = resolve));
  private exited!: (code: number) => void;
  /** resolves with the code of the shell's `app.exit` */
  readonly exit = new Promise<number>((resolve) => (this.exited = resolve));

  /** Electron is ready: the shell builds its core and opens its window. */
  becomeReady(): void {
    this.readyResolve();
  }

  /** What Electron does on `app.quit()` or Cmd-Q: emits before-quit; quits for real unless a listener prevented it. */
  requestQuit(): FakeEvent {
    const event = new FakeEvent();
    this.appEvents.emit('before-quit', event);
    return event;
  }

  /** An IPC invoke of `channel` as if sent by `frame` of `contents`. */
  async invoke(channel: string, args: unknown, from: { contents: FakeWebContents; frame: FakeFrame | null }): Promise<unknown> {
    const handler = this.handlers.get(channel);
    if (!handler) throw new Error(`No handler for ${channel}`);
    return handler({ sender: from.contents, senderFrame: from.frame, frameId: 1, processId: 1 }, args);
  }

  readonly module = this.buildModule();

  private buildModule() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const fake = this;
    class BrowserWindow extends EventEmitter {
      static getAllWindows(): FakeBrowserWindowLike[] {
        return fake.windows.filter((window) => !window.destroyed);
      }
      readonly webContents = new FakeWebContents();
      loaded: { kind: 'url' | 'file'; target: string } | undefined;
      shown = false;
      minimized = false;
      focused = 0;
      destroyed = false;
      constructor(readonly options: Record<string, unknown>) {
        super();
        fake.windows.push(this);
        fake.windowCreated(this);
      }
      loadURL(url: string): Promise<void> {
        this.loaded = { kind: 'url', target: url };
        this.webContents.mainFrame.url = url;
        return Promise.resolve();
      }
      loadFile(path: string): Promise<void> {
        this.loaded = { kind: 'file', target: path };
        this.webContents.mainFrame.url = pathToFileURL(path).href;
        return Promise.resolve();
      }
      show(): void {
        this.shown = true;
      }
      isMinimized(): boolean {
        return this.minimized;
      }
      restore(): void {
        this.minimized = false;
      }
      focus(): void {
        this.focused += 1;
      }
    }
    return {
      app: {
        get isPackaged() {
          return fake.packaged;
        },
        requestSingleInstanceLock: () => fake.singleInstanceLock,
        quit: () => {
          fake.quits += 1;
          fake.requestQuit();
        },
        exit: (code = 0) => {
          fake.exits.push(code);
          fake.exited(code);
        },
        on: (name: string, listener: Listener) => void fake.appEvents.on(name, listener),
        once: (name: string, listener: Listener) => void fake.appEvents.once(name, listener),
        whenReady: () => fake.ready,
        getPath: (name: string) => {
          if (name !== 'userData') throw new Error(`The fake knows only userData, not ${name}`);
          return fake.userData;
        },
      },
      BrowserWindow,
      ipcMain: {
        handle: (channel: string, handler: (event: unknown, ...args: unknown[]) => unknown) => {
          if (fake.handlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
          fake.handlers.set(channel, handler);
        },
        on: (channel: string) => {
          throw new Error(`The shell listens to ipcMain.on('${channel}'): only handle is expected`);
        },
      },
      session: {
        defaultSession: {
          setPermissionRequestHandler: (handler: FakeElectron['permissionRequestHandler']) => (fake.permissionRequestHandler = handler),
          setPermissionCheckHandler: (handler: FakeElectron['permissionCheckHandler']) => (fake.permissionCheckHandler = handler),
        },
      },
      safeStorage: {
        isEncryptionAvailable: () => fake.safeStorage.available,
        getSelectedStorageBackend: () => fake.safeStorage.backend,
        // Reversible but not plain, like a keychain's ciphertext.
        encryptString: (plain: string) => Buffer.from(`sealed:${Buffer.from(plain).toString('hex')}`),
        decryptString: (sealed: Buffer) => Buffer.from(sealed.toString().replace(/^sealed:/, ''), 'hex').toString(),
      },
      shell: {
        openExternal: (url: string) => {
          fake.openedExternally.push(url);
          return Promise.resolve();
        },
      },
      Menu: {
        buildFromTemplate: (template: unknown) => ({ template }),
        setApplicationMenu: (menu: unknown) => (fake.applicationMenu = menu),
      },
    };
  }
}

export type FakeBrowserWindowLike = EventEmitter & {
  options: Record<string, unknown>;
  webContents: FakeWebContents;
  loaded: { kind: 'url' | 'file'; target: string } | undefined;
  shown: boolean;
  minimized: boolean;
  focused: number;
  destroyed: boolean;
};

// On globalThis, so a test's vi.resetModules (a fresh load of the shell) keeps the fake the test installed.
const slot = globalThis as { bridgescopeFakeElectron?: FakeElectron };

/** The fake the next load of the shell talks to. */
export function useFakeElectron(fake: FakeElectron): FakeElectron {
  slot.bridgescopeFakeElectron = fake;
  return fake;
}

function current(): FakeElectron {
  const fake = slot.bridgescopeFakeElectron;
  if (!fake) throw new Error('No fake Electron installed (useFakeElectron)');
  return fake;
}

/** What `import ... from 'electron'` gives the built main: every name delegates to the fake in use at the time of the call. */
export const electronModule = {
  get app() {
    return current().module.app;
  },
  get BrowserWindow() {
    return current().module.BrowserWindow;
  },
  get ipcMain() {
    return current().module.ipcMain;
  },
  get session() {
    return current().module.session;
  },
  get safeStorage() {
    return current().module.safeStorage;
  },
  get Menu() {
    return current().module.Menu;
  },
  get shell() {
    return current().module.shell;
  },
};

/** The renderer side for the built preload: contextBridge and ipcRenderer, recording what crosses. */
export class FakeRenderer {
  readonly exposed = new Map<string, unknown>();
  readonly invoked: { channel: string; args: unknown[] }[] = [];
  readonly ipc = new EventEmitter();
  readonly module = {
    contextBridge: {
      exposeInMainWorld: (key: string, api: unknown) => {
        if (this.exposed.has(key)) throw new Error(`Cannot bind an API on top of an existing property: ${key}`);
        this.exposed.set(key, api);
      },
    },
    ipcRenderer: {
      invoke: (channel: string, ...args: unknown[]) => {
        this.invoked.push({ channel, args });
        return Promise.resolve({ ok: true, result: { channel } });
      },
      on: (channel: string, listener: Listener) => void this.ipc.on(channel, listener),
      removeListener: (channel: string, listener: Listener) => void this.ipc.removeListener(channel, listener),
      off: (channel: string, listener: Listener) => void this.ipc.off(channel, listener),
    },
  };

  /** The main process sends an event: Electron calls each listener with (IpcRendererEvent, payload). */
  emitFromMain(channel: string, payload: unknown): void {
    this.ipc.emit(channel, { sender: { secret: 'the raw IpcRendererEvent' }, ports: [] }, payload);
  }
}
