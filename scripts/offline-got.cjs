// Stands in for `got` inside Electronegativity (scripts/electronegativity.cjs): its only requests (updated translations,
// Electron's release list) need the internet, which the project's machines do not reach, and on Node 24 got 11's retry
// of a failed request throws after its promise settled ("The `onCancel` handler was attached after the promise
// settled"), which ended the scan. Refused at once instead: the scanner falls back to its own files, as it does offline.
const offline = () => Promise.reject(new Error('BridgeScope runs Electronegativity without the network'));
offline.head = offline;
module.exports = offline;
