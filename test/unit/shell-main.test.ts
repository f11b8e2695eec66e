/** The built Electron main (what the installer ships), run in Node against a stand-in `electron`: what the shell does, not how it is spelled. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { commandNames } from '../../src/shared/contract';
import { FakeElectron, FakeEvent, FakeWebContents, useFakeElectron, type FakeBrowserWindowLike } from '../support/fake-electron';

vi.mock('electron', async () => (await import('../support/fake-electron')).electronModule);

const root = join(import.meta.dirname, '..', '..');
const builtMain = join(root, 'out', 'main', 'index.js');
const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

let userData: string;
const running: FakeElectron[] = [];
let signalListeners: Map<string, Set<unknown>>;

/** Loads the built main afresh, as one start of the app, against `fake`. */
async function launch(fake = new FakeElectron()): Promise<FakeElectron> {
  fake.userData ||= userData;
  useFakeElectron(fake);
  vi.resetModules();
  await import(builtMain);
  running.push(fake);
  return fake;
}

/** Starts the app and waits for its window. */
async function started(fake?: FakeElectron): Promise<{ fake: FakeElectron; window: FakeBrowserWindowLike }> {
  const app = await launch(fake);
  app.becomeReady();
  return { fake: app, window: await app.firstWindow };
}

const ownPage = (window: FakeBrowserWindowLike) => ({ contents: window.webContents, frame: window.webContents.mainFrame });

beforeAll(() => {
  if (!existsSync(builtMain)) throw new Error('Run `npm run build` first: these tests load the built out/main/index.js');
});

beforeEach(() => {
  userData = mkdtempSync(join(tmpdir(), 'bridgescope-shell-'));
  // A configured profile on ports nothing listens on: the app tries it and fails at once instead of starting a sandbox broker.
  vi.stubEnv('BRIDGESCOPE_AMQP_URL', 'amqp://guest:guest@127.0.0.1:9');
  vi.stubEnv('BRIDGESCOPE_MQTT_URL', 'mqtt://127.0.0.1:9');
  vi.stubEnv('BRIDGESCOPE_MANAGEMENT_URL', 'http://guest:guest@127.0.0.1:9');
  vi.stubEnv('ELECTRON_RENDERER_URL', undefined);
  signalListeners = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
});

afterEach(async () => {
  // Every app started here quits through its own sequence.
  for (const fake of running.splice(0)) {
    if (fake.exits.length === 0 && fake.handlers.size > 0) {
      fake.requestQuit();
      await fake.exit;
    }
  }
  for (const signal of signals) for (const listener of process.listeners(signal)) if (!signalListeners.get(signal)?.has(listener)) process.off(signal, listener as () => void);
  vi.unstubAllEnvs();
  rmSync(userData, { recursive: true, force: true });
});

describe('the built Electron main', () => {
  it('opens one isolated, sandboxed window without Node or webviews, with a preload and a page that exist on disk', async () => {
    const { fake, window } = await started();
    const prefs = window.options.webPreferences as Record<string, unknown>;
    expect(prefs).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false, webviewTag: false });
    expect(prefs.nodeIntegrationInSubFrames).not.toBe(true);
    expect(prefs.webSecurity).not.toBe(false);
    expect(existsSync(prefs.preload as string)).toBe(true);
    expect(prefs.preload).toBe(join(root, 'out', 'preload', 'index.cjs'));
    expect(window.loaded).toEqual({ kind: 'file', target: join(root, 'out', 'renderer', 'index.html') });
    expect(existsSync(window.loaded!.target)).toBe(true);
    expect(existsSync(window.options.icon as string)).toBe(true);
    expect(fake.applicationMenu).toBeDefined();
    expect(window.shown).toBe(false);
    window.emit('ready-to-show');
    expect(window.shown).toBe(true);
  });

  it('binds every contract command with ipcMain.handle, and nothing else', async () => {
    const { fake } = await started();
    expect([...fake.handlers.keys()].sort()).toEqual([...commandNames].sort());
  });

  it("lets the app's own page reach the core", async () => {
    const { fake, window } = await started();
    const answer = await fake.invoke('app.state.get', {}, ownPage(window));
    expect(answer).toMatchObject({ ok: true, result: { mode: 'electron' } });
  });

  it('refuses a call from a subframe, from another file:// page, from another window, or from a frame that is gone', async () => {
    const { fake, window } = await started();
    const own = window.webContents.mainFrame;
    const refused = { ok: false, error: { code: 'bad-input' } };
    // A frame inside our page, even one showing the same file.
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: own.url, parent: own } })).toMatchObject(refused);
    // Our window navigated (somehow) to another local file.
    const elsewhere = pathToFileURL(join(tmpdir(), 'index.html')).href;
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: elsewhere, parent: null } })).toMatchObject(refused);
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: `${own.url}/../../other.html`, parent: null } })).toMatchObject(refused);
    // Another window's page, even the same file.
    expect(await fake.invoke('app.state.get', {}, { contents: new FakeWebContents(), frame: { url: own.url, parent: null } })).toMatchObject(refused);
    // A frame that is gone, or on its way out after navigating elsewhere.
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: null })).toMatchObject(refused);
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: own.url, parent: null, detached: true } })).toMatchObject(refused);
    // The page itself with another fragment is still the page.
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: `${own.url}#/trace`, parent: null } })).toMatchObject({ ok: true });
  });

  it('accepts the dev server page under electron-vite dev, and no other origin', async () => {
    vi.stubEnv('ELECTRON_RENDERER_URL', 'http://localhost:5173');
    const { fake, window } = await started();
    expect(window.loaded).toEqual({ kind: 'url', target: 'http://localhost:5173/' });
    expect(await fake.invoke('app.state.get', {}, ownPage(window))).toMatchObject({ ok: true });
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: 'http://localhost:5174/', parent: null } })).toMatchObject({ ok: false });
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: pathToFileURL(join(root, 'out', 'renderer', 'index.html')).href, parent: null } })).toMatchObject({ ok: false });
  });

  it('ignores a dev server URL in the environment once installed, and loads its own page', async () => {
    vi.stubEnv('ELECTRON_RENDERER_URL', 'http://localhost:5173');
    const fake = new FakeElectron();
    fake.packaged = true;
    const { window } = await started(fake);
    expect(window.loaded).toEqual({ kind: 'file', target: join(root, 'out', 'renderer', 'index.html') });
    expect(await fake.invoke('app.state.get', {}, { contents: window.webContents, frame: { url: 'http://localhost:5173/', parent: null } })).toMatchObject({ ok: false });
  });

  it('prevents navigation and webviews, denies window.open and every permission', async () => {
    const { fake, window } = await started();
    const navigation = new FakeEvent();
    window.webContents.emit('will-navigate', navigation, 'https://example.com/');
    expect(navigation.defaultPrevented).toBe(true);
    const webview = new FakeEvent();
    window.webContents.emit('will-attach-webview', webview, {}, {});
    expect(webview.defaultPrevented).toBe(true);
    expect(window.webContents.windowOpenHandler?.({ url: 'https://example.com/' })).toEqual({ action: 'deny' });
    // A documentation link is denied in the app and handed to the OS browser; nothing else is.
    const doc = 'https://github.com/rabbitmq/rabbitmq-server/blob/main/release-notes/3.13.0.md';
    expect(window.webContents.windowOpenHandler?.({ url: doc })).toEqual({ action: 'deny' });
    expect(window.webContents.windowOpenHandler?.({ url: 'https://github.com.evil.example/rabbitmq/rabbitmq-server/' })).toEqual({ action: 'deny' });
    expect(fake.openedExternally).toEqual([doc]);
    const granted: boolean[] = [];
    fake.permissionRequestHandler?.(window.webContents, 'media', (answer) => granted.push(answer));
    fake.permissionRequestHandler?.(window.webContents, 'notifications', (answer) => granted.push(answer));
    expect(granted).toEqual([false, false]);
    expect(fake.permissionCheckHandler?.(window.webContents, 'clipboard-read', 'file://', {})).toBe(false);
  });

  it('focuses the first window when a second instance starts', async () => {
    const { fake, window } = await started();
    window.minimized = true;
    fake.appEvents.emit('second-instance', new FakeEvent(), ['bridgescope'], '/');
    expect(window.minimized).toBe(false);
    expect(window.focused).toBe(1);
  });

  it('quits at once as the second instance, without a window or a core', async () => {
    const fake = new FakeElectron();
    fake.singleInstanceLock = false;
    await launch(fake);
    fake.becomeReady();
    await Promise.resolve();
    expect(fake.quits).toBe(1);
    expect(fake.windows).toEqual([]);
    expect(fake.handlers.size).toBe(0);
  });

  it('on quit cleans up before exiting, and a second quit meanwhile does not cut it short', async () => {
    const { fake } = await started();
    const first = fake.requestQuit();
    const second = fake.requestQuit();
    expect(first.defaultPrevented).toBe(true);
    expect(second.defaultPrevented).toBe(true);
    expect(fake.exits).toEqual([]);
    expect(await fake.exit).toBe(0);
    expect(fake.exits).toEqual([0]);
    // Past the cleanup a quit goes through.
    expect(fake.requestQuit().defaultPrevented).toBe(false);
  });

  it('quits through the same sequence when all windows close or a SIGTERM arrives', async () => {
    const { fake } = await started();
    fake.appEvents.emit('window-all-closed');
    // Only the shell's own SIGTERM listeners: the test runner's are not ours to trigger.
    for (const listener of process.listeners('SIGTERM')) if (!signalListeners.get('SIGTERM')?.has(listener)) (listener as (signal: string) => void)('SIGTERM');
    expect(fake.quits).toBe(process.platform === 'darwin' ? 1 : 2);
    expect(await fake.exit).toBe(0);
    expect(fake.exits).toEqual([0]);
  });
});

describe('profile passwords in the built main', () => {
  const profile = { name: 'lab', amqpUrl: 'amqp://app:s3cret@127.0.0.1:9/', mqttUrl: 'mqtt://127.0.0.1:9', managementUrl: 'http://app:s3cret@127.0.0.1:9', vhost: '/', exchange: 'amq.topic' };

  async function saveThenRestart(setup: (fake: FakeElectron) => void): Promise<{ listed: unknown; loaded: unknown; exported: string; file: string }> {
    const first = new FakeElectron();
    setup(first);
    const { window } = await started(first);
    expect(await first.invoke('profile.save', { profile }, ownPage(window))).toMatchObject({ ok: true });
    first.requestQuit();
    await first.exit;
    const second = new FakeElectron();
    setup(second);
    const again = await started(second);
    const listed = await second.invoke('profile.list', {}, ownPage(again.window));
    const loaded = await second.invoke('profile.load', { name: 'lab' }, ownPage(again.window));
    // A Load shows the passwords as *** (issue 26); an export that asks for them shows they came back from the keychain.
    const exported = JSON.stringify(await second.invoke('workspace.export.create', { includePasswords: true }, ownPage(again.window)));
    return { listed, loaded, exported, file: readFileSync(join(userData, 'profiles.json'), 'utf8') };
  }

  it('keeps them in the OS keychain when there is one, never in the file', async () => {
    const { listed, loaded, exported, file } = await saveThenRestart(() => undefined);
    expect(listed).toMatchObject({ ok: true, result: [{ name: 'lab', secretStorage: 'os-encrypted' }] });
    expect(loaded).toMatchObject({ ok: true, result: { amqpUrl: 'amqp://app:***@127.0.0.1:9/', managementUrl: 'http://app:***@127.0.0.1:9' } });
    expect(exported).toContain(profile.amqpUrl);
    expect(file).not.toContain('s3cret');
  });

  it.each([
    ['safeStorage is unavailable', (fake: FakeElectron) => (fake.safeStorage.available = false)],
    ["Linux's basic_text backend is all there is", (fake: FakeElectron) => (fake.safeStorage.backend = 'basic_text')],
  ])('still keeps profiles working across restarts when %s, and says they are in plain text', async (_case, setup) => {
    const linuxOnly = setup.toString().includes('basic_text') && process.platform !== 'linux';
    const { listed, loaded, exported } = await saveThenRestart(setup);
    expect(listed).toMatchObject({ ok: true, result: [{ name: 'lab', secretStorage: linuxOnly ? 'os-encrypted' : 'plain-text' }] });
    expect(loaded).toMatchObject({ ok: true, result: { amqpUrl: 'amqp://app:***@127.0.0.1:9/', managementUrl: 'http://app:***@127.0.0.1:9' } });
    expect(exported).toContain(profile.amqpUrl);
  });
});
