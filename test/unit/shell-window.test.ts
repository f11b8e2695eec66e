/** The shell's decisions as pure functions: which caller is the app's page, the window's options, where passwords go. */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { appPage, isAppPageCall, isDocLink, menuTemplate, windowOptions } from '../../src/main/window';
import { osSecretBox, type SafeStorageLike } from '../../src/main/secrets';

const mainDir = join('/opt', 'BridgeScope', 'resources', 'app.asar', 'out', 'main');
const page = appPage(mainDir);
const pageUrl = pathToFileURL(join('/opt', 'BridgeScope', 'resources', 'app.asar', 'out', 'renderer', 'index.html')).href;
const top = { topFrame: true, ourWindow: true };

describe('the app page and the IPC sender check', () => {
  it('loads the built index.html beside the main, or the dev server when electron-vite dev gives one', () => {
    expect(page).toEqual({ kind: 'file', path: join(mainDir, '..', 'renderer', 'index.html'), url: pageUrl });
    expect(appPage(mainDir, 'http://localhost:5173')).toEqual({ kind: 'url', url: 'http://localhost:5173/' });
  });

  it("accepts the top frame of our window showing the app's page, whatever its fragment", () => {
    expect(isAppPageCall({ url: pageUrl, ...top }, page)).toBe(true);
    expect(isAppPageCall({ url: `${pageUrl}#/trace`, ...top }, page)).toBe(true);
  });

  it('refuses any other file:// page, a subframe, another window, a caller without a URL', () => {
    expect(isAppPageCall({ url: pathToFileURL('/tmp/index.html').href, ...top }, page)).toBe(false);
    expect(isAppPageCall({ url: `${pageUrl}?x=1`, ...top }, page)).toBe(false);
    expect(isAppPageCall({ url: 'file:///', ...top }, page)).toBe(false);
    expect(isAppPageCall({ url: pageUrl, topFrame: false, ourWindow: true }, page)).toBe(false);
    expect(isAppPageCall({ url: pageUrl, topFrame: true, ourWindow: false }, page)).toBe(false);
    expect(isAppPageCall({ url: undefined, ...top }, page)).toBe(false);
    expect(isAppPageCall({ url: 'not a url', ...top }, page)).toBe(false);
  });

  it("refuses another origin than the dev server's", () => {
    const dev = appPage(mainDir, 'http://localhost:5173/');
    expect(isAppPageCall({ url: 'http://localhost:5173/', ...top }, dev)).toBe(true);
    expect(isAppPageCall({ url: 'http://localhost:5173/other.html', ...top }, dev)).toBe(false);
    expect(isAppPageCall({ url: 'http://127.0.0.1:5173/', ...top }, dev)).toBe(false);
    expect(isAppPageCall({ url: pageUrl, ...top }, dev)).toBe(false);
  });
});

describe('the window options', () => {
  it('isolate the page: context isolation, sandbox, no Node anywhere, web security on, no webview, no auxclick', () => {
    expect(windowOptions(mainDir).webPreferences).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInSubFrames: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      disableBlinkFeatures: 'Auxclick',
      preload: join(mainDir, '..', 'preload', 'index.cjs'),
    });
  });

  it('have the app menu on macOS only', () => {
    expect(menuTemplate('darwin')[0]).toEqual({ role: 'appMenu' });
    expect(menuTemplate('linux').map((item) => item.role)).toEqual(['fileMenu', 'editMenu', 'viewMenu', 'windowMenu']);
  });
});

describe('where the app keeps profile passwords', () => {
  const keychain = (available: boolean, backend = 'gnome_libsecret'): SafeStorageLike => ({
    isEncryptionAvailable: () => available,
    getSelectedStorageBackend: () => backend,
    encryptString: (plain) => Buffer.from([...Buffer.from(plain)].map((byte) => byte ^ 0x5a)),
    decryptString: (sealed) => Buffer.from([...sealed].map((byte) => byte ^ 0x5a)).toString(),
  });

  it('seals them with the OS keychain when there is one', () => {
    const box = osSecretBox(keychain(true), 'linux');
    const sealed = box.seal('s3cret');
    expect(box.kind).toBe('os-encrypted');
    expect(sealed).not.toContain('s3cret');
    expect(box.open(sealed)).toBe('s3cret');
  });

  it("says plain text when there is no keychain or only Linux's basic_text, and the passwords still come back", () => {
    for (const box of [osSecretBox(keychain(false), 'linux'), osSecretBox(keychain(true, 'basic_text'), 'linux')]) {
      expect(box.kind).toBe('plain-text');
      expect(box.open(box.seal('s3cret'))).toBe('s3cret');
    }
  });

  it('opens passwords written plain after the keychain came back, and gives an empty one for what it cannot decrypt', () => {
    const plain = osSecretBox(keychain(false), 'linux').seal('s3cret');
    const box = osSecretBox(keychain(true), 'linux');
    expect(box.open(plain)).toBe('s3cret');
    const broken = osSecretBox({ ...keychain(true), decryptString: () => { throw new Error('wrong key'); } }, 'linux');
    expect(broken.open('AAAA')).toBe('');
    expect(osSecretBox(keychain(false), 'linux').open(box.seal('s3cret'))).toBe('');
  });
});

describe('documentation links', () => {
  it('RabbitMQ docs and its source count; anything else, a look-alike host or credentials in the URL do not', () => {
    expect(isDocLink('https://www.rabbitmq.com/docs/mqtt')).toBe(true);
    expect(isDocLink('https://github.com/rabbitmq/rabbitmq-server/blob/v3.13.0/deps/rabbitmq_mqtt/src/mc_mqtt.erl')).toBe(true);
    expect(isDocLink('https://github.com/rabbitmq/rabbitmq-server.evil/x')).toBe(false);
    expect(isDocLink('https://github.com@evil.example/rabbitmq/rabbitmq-server/')).toBe(false);
    expect(isDocLink('https://user:pw@www.rabbitmq.com/docs/mqtt')).toBe(false);
    expect(isDocLink('http://www.rabbitmq.com/docs/mqtt')).toBe(false);
    expect(isDocLink('file:///etc/passwd')).toBe(false);
    expect(isDocLink('not a url')).toBe(false);
  });
});
