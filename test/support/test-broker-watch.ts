/**
 * The watcher of one claimed test broker folder (see claimTestBroker): its standard input is a pipe from the process
 * that claimed the folder. When that process is gone, however it ended, the pipe ends: every node still running in the
 * folder is stopped and the folder removed. After a teardown that already did so, there is nothing left to do.
 */
import { clearTestBrokerDir } from './reap';

const dir = process.env.BRIDGESCOPE_WATCHED_DIR;
if (!dir) throw new Error('BRIDGESCOPE_WATCHED_DIR names the folder to watch');
// Its own session keeps a terminal's Ctrl-C and hang-up away; one sent to it by name does not stop the clean-up either.
for (const name of ['SIGINT', 'SIGHUP'] as const) process.on(name, () => undefined);
let clearing = false;
const clear = (): void => {
  if (clearing) return;
  clearing = true;
  // Bounded, whatever the broker does.
  setTimeout(() => process.exit(1), 90_000).unref();
  void clearTestBrokerDir(dir).then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.stdin.on('end', clear);
process.stdin.on('close', clear);
process.stdin.on('error', clear);
process.stdin.resume();
