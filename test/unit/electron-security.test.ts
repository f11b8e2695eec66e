import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The Electron binary cannot run here, so the security checklist is checked on the sources that configure it. */
const root = join(import.meta.dirname, '..', '..');
const main = readFileSync(join(root, 'src', 'main', 'index.ts'), 'utf8');
const preload = readFileSync(join(root, 'src', 'preload', 'index.ts'), 'utf8');
const html = readFileSync(join(root, 'src', 'renderer', 'index.html'), 'utf8');
const builder = readFileSync(join(root, 'electron-builder.yml'), 'utf8');

describe('the Electron security checklist', () => {
  it('isolates the renderer: contextIsolation, sandbox, no nodeIntegration, no webview, no auxclick', () => {
    expect(main).toMatch(/contextIsolation: true/);
    expect(main).toMatch(/sandbox: true/);
    expect(main).toMatch(/nodeIntegration: false/);
    expect(main).toMatch(/webviewTag: false/);
    expect(main).toMatch(/disableBlinkFeatures: 'Auxclick'/);
  });

  it('denies navigation, new windows and permission requests', () => {
    expect(main).toMatch(/setWindowOpenHandler\(\(\) => \(\{ action: 'deny' \}\)\)/);
    expect(main).toMatch(/'will-navigate', \(event\) => event\.preventDefault\(\)/);
    expect(main).toMatch(/setPermissionRequestHandler\([^)]*\) => callback\(false\)\)/);
  });

  it('checks the IPC sender and validates every command at the boundary', () => {
    expect(main).toMatch(/if \(!fromOurPage\(event\)\)/);
    expect(main).toMatch(/for \(const name of commandNames\)/);
    expect(main).toMatch(/dispatch\(session\.handlers, name, args\)/);
  });

  it('exposes only invoke and on from the preload, refusing names outside the contract', () => {
    expect(preload.match(/exposeInMainWorld/g)).toHaveLength(1);
    expect(preload).toMatch(/commandNames as readonly string\[\]\)\.includes\(name\)/);
    expect(preload).toMatch(/eventNames as readonly string\[\]\)\.includes\(name\)/);
    expect(preload).not.toMatch(/listener\(_event/);
  });

  it('has a CSP without unsafe-inline or unsafe-eval for scripts', () => {
    const csp = /Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1] ?? '';
    const scriptSrc = /script-src ([^;]+)/.exec(csp)?.[1] ?? '';
    expect(scriptSrc.trim()).toBe("'self'");
    expect(csp).not.toMatch(/unsafe-eval/);
  });

  it('sets the Electron fuses in packaging', () => {
    expect(builder).toMatch(/runAsNode: false/);
    expect(builder).toMatch(/enableNodeOptionsEnvironmentVariable: false/);
    expect(builder).toMatch(/enableNodeCliInspectArguments: false/);
    expect(builder).toMatch(/onlyLoadAppFromAsar: true/);
    expect(builder).toMatch(/enableEmbeddedAsarIntegrityValidation: true/);
  });
});
