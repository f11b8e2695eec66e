'use strict';
/**
 * The `debug` package as the command line's bundle sees it (scripts/cli-bundle.mjs puts this module where mqtt.js and
 * mqtt-packet require 'debug'). With DEBUG unset or empty, every logger is a plain function that does nothing: the
 * package's own disabled logger still gathers its arguments into an array on each call, and mqtt-packet calls it tens of
 * times per packet (7 KB of garbage per RPC, the largest allocator of the process, measured with V8's sampling heap
 * profiler at c=100). With DEBUG set to anything, the real package, which reads it as it always does.
 */
const real = require('debug');

function createDebug(namespace) {
  if (process.env.DEBUG) return real(namespace);
  const quiet = function quietDebug() {
    // DEBUG is not set: nothing is logged
  };
  quiet.enabled = false;
  quiet.namespace = namespace;
  quiet.extend = (suffix, delimiter = ':') => createDebug(`${namespace}${delimiter}${suffix}`);
  return quiet;
}

createDebug.enable = (namespaces) => real.enable(namespaces);
createDebug.disable = () => real.disable();
createDebug.enabled = (namespace) => real.enabled(namespace);

module.exports = createDebug;
