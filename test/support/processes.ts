/** Child processes for interop tests: start one and await a line it prints, never a fixed sleep. */
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Running {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  /** resolves with the first line (stdout or stderr) matching `pattern`, seen before or after the call */
  waitForLine(pattern: RegExp): Promise<string>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function startProcess(command: string, args: string[]): Running {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const onLine = (line: string): void => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  // 'close' comes after the last output line was read; 'exit' can come before it.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitForLine(pattern) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return settledQuietly(
        new Promise((resolve, reject) => {
          waiters.push({ pattern, resolve });
          void exited.then((code) => reject(new Error(`${command} exited (${code}) before printing ${pattern}: ${lines.join(' | ')}`)));
        }),
      );
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/**
 * The same promise, with a handler attached: a test that awaits it still gets its rejection, but one that failed
 * before awaiting it (a wait set up ahead of the step that threw) does not leave an unhandled rejection behind when the
 * process is killed in the clean-up, on top of the real failure.
 */
function settledQuietly<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

export interface GroupLeader {
  child: ChildProcess;
  pid: number;
  lines: string[];
  /** resolves with the first line (stdout or stderr) matching `pattern`, seen before or after the call */
  waitForLine(pattern: RegExp): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** what a terminal's Ctrl-C does: the signal to every process of the group */
  signalGroup(signal: NodeJS.Signals): void;
  /** SIGKILL to the whole group if it still runs, then its exit */
  kill(): Promise<void>;
}

/** Starts a command as the leader of its own process group (as a shell does), so a test can signal the whole group. */
export function startGroupLeader(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): GroupLeader {
  const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const onLine = (line: string): void => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (!waiter.pattern.test(line)) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  };
  createInterface({ input: child.stdout as Readable }).on('line', onLine);
  createInterface({ input: child.stderr as Readable }).on('line', onLine);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), signal);
    } catch {
      // the group is already gone
    }
  };
  return {
    child,
    pid: child.pid as number,
    lines,
    exited,
    signalGroup,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        signalGroup('SIGKILL');
        await exited;
      }
    },
    waitForLine(pattern) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return settledQuietly(
        new Promise((resolve, reject) => {
          waiters.push({ pattern, resolve });
          void exited.then(({ code, signal }) => reject(new Error(`exited (${code ?? signal}) before printing ${pattern}: ${lines.join(' | ')}`)));
        }),
      );
    },
  };
}

/**
 * Pauses a process (a broker node: SIGSTOP) and resolves once the kernel shows every thread of it stopped (state T in
 * /proc/<pid>/task/<tid>/stat: the VM's schedulers are threads), so what the test does next meets a process that no
 * longer answers. Bounded: a process not stopped within 5 s is resumed and fails the test with that sentence.
 */
export async function pauseProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const deadline = Date.now() + 5000;
  for (;;) {
    const states = await threadStates(pid);
    if (states.length > 0 && states.every((state) => state === 'T' || state === 't')) return;
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone meanwhile: the error below says so
      }
      throw new Error(`process ${pid} was sent SIGSTOP but is not stopped after 5 s (its threads' states: ${states.join('') || 'none, it is gone'})`);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The state letter of each thread of a process (empty when it is gone). */
async function threadStates(pid: number): Promise<string[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const stats = await Promise.all(tasks.map((tid) => readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '')));
  // The state follows the command name, which is in parentheses and may hold spaces or parentheses itself.
  return stats.filter((stat) => stat !== '').map((stat) => stat.charAt(stat.lastIndexOf(')') + 2));
}

/**
 * A Mosquitto broker of the test's own on `port` (anonymous, nothing persisted): another broker than the RabbitMQ
 * asked, for the not-this-broker cases. Debian's mosquitto package (.ci/run installs it); a missing one fails the test
 * with this sentence, never skips it.
 */
export async function startMosquitto(port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const binary = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((path) => existsSync(path));
  if (!binary) throw new Error('This test needs a Mosquitto broker: apt-get install mosquitto.');
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-mosquitto-'));
  await writeFile(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n`);
  const mosquitto = startProcess(binary, ['-c', join(dir, 'mosquitto.conf')]);
  await mosquitto.waitForLine(/running/);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      await mosquitto.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
