import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The parts of the Electron security checklist that are not the shell's behaviour: the page's CSP as built.
 * The window, the IPC sender check, navigation, permissions and the preload are proven on the built bundle in
 * shell-main.test.ts and shell-preload.test.ts; the fuses in shell-packaging.test.ts.
 */
const builtPage = join(import.meta.dirname, '..', '..', 'out', 'renderer', 'index.html');

describe('the Electron security checklist', () => {
  it('ships a page whose CSP allows only its own scripts: no inline script, no eval, no remote code', () => {
    if (!existsSync(builtPage)) throw new Error('Run `npm run build` first: this test reads the built out/renderer/index.html');
    const html = readFileSync(builtPage, 'utf8');
    const csp = /Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1] ?? '';
    const directives = new Map(csp.split(';').map((part) => part.trim().split(/\s+/)).map(([name = '', ...values]) => [name, values]));
    expect(directives.get('script-src') ?? directives.get('default-src')).toEqual(["'self'"]);
    expect(csp).not.toMatch(/unsafe-eval/);
    // Every script the built page loads is a file of its own, not inline code.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  });
});
