// Runs @doyensec/electronegativity, whose CLI needs the old commander API (v6) but does not declare it:
// inside that package, `require('commander')` is pointed at commander v6, and `require('got')` at a stand-in that
// refuses every request at once (scripts/offline-got.cjs says why); nothing else changes.
const Module = require('node:module');
const path = require('node:path');
const scanner = path.dirname(require.resolve('@doyensec/electronegativity/package.json'));
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  if (request === 'commander' && parent && parent.filename && parent.filename.startsWith(scanner)) {
    return resolve.call(this, 'commander6', parent, ...rest);
  }
  if (request === 'got' && parent && parent.filename && parent.filename.startsWith(scanner)) {
    return path.join(__dirname, 'offline-got.cjs');
  }
  return resolve.call(this, request, parent, ...rest);
};
require('@doyensec/electronegativity/dist/index.js');
