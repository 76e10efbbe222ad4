/**
 * naq as a subprocess, for tests: run a command to its end (`runCli`), or start a long-running
 * one and track it (`spawned`), so `afterEach(killSpawned)` leaves nothing behind.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { cleanEnv } from './harness.js';
import { CLI } from './paths.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `naq ...args` to its end; fails (instead of hanging) after `timeoutMs`. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`naq ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    void exitedWithOutput(child).then((code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The child's exit code, once it exited and what it wrote to its pipes was read: 'exit' can
 * come before the last chunks of stdout and stderr (a CLI's error line), 'close' comes after
 * them. A grandchild still holding the pipes must not hang a test: 2 s after 'exit' it
 * resolves with what was read by then.
 */
export function exitedWithOutput(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    let code: number | null = null;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve(code);
    };
    child.on('exit', (exitCode) => {
      code = exitCode;
      setTimeout(finish, 2000).unref();
    });
    child.on('close', (closeCode) => {
      if (closeCode !== null) code = closeCode;
      finish();
    });
  });
}

const live = new Set<ChildProcess>();

/** Starts a child process that `killSpawned()` will SIGKILL if the test leaves it running. */
export function spawned(command: string, args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, options);
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

export function killSpawned(): void {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  live.clear();
}
