/** Whether a process still runs, as the sandbox, the data-dir lock and the tracing records each need to know. */

/** Whether `pid` is a live process (EPERM: alive, another OS user's; ESRCH: gone). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
