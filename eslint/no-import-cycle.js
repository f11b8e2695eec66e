// A lint rule: no import circle among the modules of one folder, type-only imports included. eslint-plugin-import's
// no-cycle (and import-x's) skip `import type`, yet a type-only circle still ties two modules together: neither can be
// read, moved or split alone. The folder's modules import each other only as './name', so their edges are read from
// the text of each file.
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const edgePattern = /^\s*(?:import|export)\b[^;]*?\bfrom\s+'\.\/([\w.-]+)'/gm;

/** The './name' modules a file imports or re-exports from, as file paths; read once per lint run. */
const edgesCache = new Map();
function edgesOf(file) {
  let edges = edgesCache.get(file);
  if (!edges) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // a module that does not exist is the compiler's to report
    }
    edges = [...text.matchAll(edgePattern)].map((match) => join(dirname(file), `${match[1].replace(/\.ts$/, '')}.ts`));
    edgesCache.set(file, edges);
  }
  return edges;
}

/** A path of modules from `from` back to `to`, or undefined. */
function pathBack(from, to, seen = new Set()) {
  if (from === to) return [to];
  if (seen.has(from)) return undefined;
  seen.add(from);
  for (const next of edgesOf(from)) {
    const rest = pathBack(next, to, seen);
    if (rest) return [from, ...rest];
  }
  return undefined;
}

export default {
  meta: {
    type: 'problem',
    docs: { description: "No import circles between a folder's modules, type-only imports included." },
    messages: { cycle: 'Import circle: {{path}}. Move what both need into a leaf module that imports neither.' },
    schema: [],
  },
  create(context) {
    const file = context.filename;
    const check = (node) => {
      const source = node.source?.value;
      if (typeof source !== 'string' || !source.startsWith('./')) return;
      const target = join(dirname(file), `${source.slice(2).replace(/\.ts$/, '')}.ts`);
      const back = pathBack(target, file);
      if (back) context.report({ node, messageId: 'cycle', data: { path: [file, ...back].map((path) => basename(path)).join(' -> ') } });
    };
    return { ImportDeclaration: check, ExportNamedDeclaration: check, ExportAllDeclaration: check };
  },
};
