/**
 * naq CLI processes (`naq worker`, `naq scheduler`) as the chaos runner sees them: started
 * with a clean environment, their log kept in a file for the post-mortem, SIGKILLed on
 * purpose, and told apart from those that died on their own (a crash is a finding).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository root: where package.json is, from chaos/ (vitest) or dist/chaos/ (node). */
export function repoRoot(from: string = import.meta.dirname): string {
  let dir = from;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'naq') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find naq's package.json above ${from}`);
    dir = up;
  }
}

export function cliPath(root = repoRoot()): string {
  const cli = join(root, 'dist/src/main.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx tsc -p tsconfig.json)`);
  return cli;
}

/**
 * The compiled handlers when the build has them: a worker then starts without tsx compiling
 * TypeScript, which on a loaded 2-core machine is the difference between a replacement
 * worker serving within a second and one that steals CPU from the others for several.
 */
export function handlersPath(root = repoRoot()): string {
  const js = join(root, 'dist/test/support/fixtures/chaos-handlers.js');
  return existsSync(js) ? js : join(root, 'test/support/fixtures/chaos-handlers.ts');
}

const TAIL_BYTES = 16 * 1024;
const live = new Set<ChildProcess>();
let hooked = false;

export interface NaqProcessOptions {
  name: string;
  role: 'worker' | 'scheduler' | 'tick-worker';
  cli: string;
  args: string[];
  env: Record<string, string>;
  logFile: string;
}

export class NaqProcess {
  readonly name: string;
  readonly role: NaqProcessOptions['role'];
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set before a SIGKILL we sent, so the exit is not mistaken for a crash. */
  killedOnPurpose = false;
  hasExited = false;
  ready = false;
  #tail = '';
  #readyWaiters: Array<() => void> = [];

  constructor(opts: NaqProcessOptions) {
    if (!hooked) {
      hooked = true;
      process.on('exit', () => {
        for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      });
    }
    this.name = opts.name;
    this.role = opts.role;
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));
    this.child = spawn(process.execPath, [opts.cli, ...opts.args], {
      env: { ...clean, NO_COLOR: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.child);
    const file = createWriteStream(opts.logFile, { flags: 'a' });
    file.on('error', () => {});
    const onData = (d: Buffer) => {
      file.write(d);
      this.#tail = (this.#tail + d.toString()).slice(-TAIL_BYTES);
      if (!this.ready && this.#tail.includes('all services running')) {
        this.ready = true;
        for (const w of this.#readyWaiters.splice(0)) w();
      }
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.hasExited = true;
        live.delete(this.child);
        // Late output still lands in the file; end() waits for it.
        setTimeout(() => file.end(), 100).unref();
        for (const w of this.#readyWaiters.splice(0)) w();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The last lines it printed (for a report on why it exited or never got ready). */
  tail(lines = 20): string {
    return this.#tail.trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Resolves once the supervisor reports every service running; rejects on exit or timeout. */
  async whenReady(timeoutMs: number): Promise<void> {
    if (!this.ready && !this.hasExited) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#readyWaiters.push(resolve);
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
    }
    if (this.ready) return;
    const why = this.hasExited ? `exited (code ${this.child.exitCode}, signal ${this.child.signalCode})` : `was not ready within ${timeoutMs} ms`;
    throw new Error(`${this.name} ${why}:\n${this.tail()}`);
  }

  async sigkill(): Promise<void> {
    this.killedOnPurpose = true;
    if (!this.hasExited) this.child.kill('SIGKILL');
    await this.exited;
  }
}
