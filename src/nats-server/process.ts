/**
 * A local nats-server child process: the supervisor's "embedded" server when no NATS URL is
 * configured, and the throwaway servers of `naq/testing` (src/testing/server.ts) that every
 * integration test runs against. Readiness is read from the server's own stderr log rather
 * than guessed from a TCP probe alone, because a probe cannot tell our server from another
 * process that already holds the port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { NaqError } from '../core/errors.js';

export interface StartNatsServerOptions {
  /** Binary name (looked up on PATH) or path. Default `nats-server`. */
  binary?: string;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Client port. `0` lets the server pick one; `restart()` then reuses the picked port. */
  port: number;
  /** Store directory (`-sd`); JetStream keeps its file storage under `<storeDir>/jetstream`. */
  storeDir: string;
  /** Enable JetStream (`-js`). Default true. */
  jetstream?: boolean;
  /** A server config file (`-c`); the flags above override what it says. */
  configFile?: string;
  /** More command-line arguments, appended last. */
  extraArgs?: string[];
  /** How long to wait for the server to be ready, per start. Default 10000. */
  readyTimeoutMs?: number;
  /** Append the server's log (its stderr) to this file as well. */
  logFile?: string;
}

export interface NatsServerProcess {
  /** `nats://HOST:PORT`, with a wildcard listen address replaced by 127.0.0.1. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly storeDir: string;
  /** Pid of the current child; changes on `restart()`. */
  readonly pid: number;
  /** True once the current child has exited (stopped, killed or crashed). */
  readonly exited: boolean;
  /** SIGTERM, wait for exit; SIGKILL if it is still running after 5 s. */
  stop(): Promise<void>;
  /**
   * Send `signal` and wait for the exit. Only for signals that end the server: nats-server
   * handles SIGHUP (reload) and SIGUSR1 (reopen log) without exiting, so those never resolve.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start again with the same port, store and arguments (stopping it first if running). */
  restart(): Promise<void>;
  /** The last lines the server logged, oldest first. */
  recentLog(): string[];
}

const EXTRA_BINARY_DIRS = ['/usr/sbin', '/usr/local/bin', '/usr/bin'];
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 2000;
const ERROR_TAIL_LINES = 15;

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The path of the nats-server binary, searching PATH and the usual system directories. */
export function findNatsServerBinary(binary = 'nats-server'): string | undefined {
  if (binary.includes('/') || binary.includes('\\')) {
    const path = isAbsolute(binary) ? binary : resolve(binary);
    return isExecutableFile(path) ? path : undefined;
  }
  const names = process.platform === 'win32' && !binary.endsWith('.exe') ? [binary, `${binary}.exe`] : [binary];
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_BINARY_DIRS];
  for (const dir of new Set(dirs)) {
    for (const name of names) {
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function missingBinaryError(binary: string, cause?: unknown): NaqError {
  return new NaqError(
    'NATS_SERVER_MISSING',
    `cannot find the NATS server binary "${binary}" (searched PATH and ${EXTRA_BINARY_DIRS.join(', ')}). ` +
      'Install it with `apt-get install nats-server` (Debian/Ubuntu) or download it from ' +
      'https://nats.io/download/ (https://github.com/nats-io/nats-server/releases), ' +
      'or set NAQ_NATS_URL to use an existing NATS server.',
    cause === undefined ? undefined : { cause },
  );
}

/** The fields of a server's INFO line that naq looks at; the rest are kept as they came. */
export interface NatsServerInfo {
  server_id: string;
  version: string;
  jetstream?: boolean;
  [key: string]: unknown;
}

function parseHostPort(url: string): { host: string; port: number } | undefined {
  const first = url.split(',')[0]?.trim();
  if (!first) return undefined;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(first) ? first : `nats://${first}`;
  try {
    const u = new URL(withScheme);
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    return { host: host || '127.0.0.1', port: u.port ? Number(u.port) : 4222 };
  } catch {
    return undefined;
  }
}

/**
 * Connect over plain TCP and read the server's INFO line (the first thing a NATS server
 * sends, before TLS or auth). Undefined when nothing answers like NATS within the timeout.
 */
export function readNatsInfo(url: string, timeoutMs = 500): Promise<NatsServerInfo | undefined> {
  const target = parseHostPort(url);
  if (!target) return Promise.resolve(undefined);
  return new Promise((resolvePromise) => {
    let buffer = '';
    let settled = false;
    const socket = createConnection({ host: target.host, port: target.port });
    const finish = (info: NatsServerInfo | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolvePromise(info);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\r\n');
      if (end < 0) {
        // INFO is a few hundred bytes; anything much longer without a line end is not NATS.
        if (buffer.length > 64 * 1024) finish(undefined);
        return;
      }
      const line = buffer.slice(0, end);
      if (!line.startsWith('INFO ')) return finish(undefined);
      try {
        const info = JSON.parse(line.slice(5)) as NatsServerInfo;
        finish(typeof info === 'object' && info !== null ? info : undefined);
      } catch {
        finish(undefined);
      }
    });
    socket.on('error', () => finish(undefined));
    socket.on('close', () => finish(undefined));
  });
}

/** Whether a NATS server answers at `url` (TCP connect + INFO line; no client, no auth). */
export async function isNatsReachable(url: string, timeoutMs = 500): Promise<boolean> {
  return (await readNatsInfo(url, timeoutMs)) !== undefined;
}

function formatUrl(host: string, port: number): string {
  const connectHost = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  return `nats://${connectHost.includes(':') ? `[${connectHost}]` : connectHost}:${port}`;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class LocalNatsServer implements NatsServerProcess {
  readonly host: string;
  readonly storeDir: string;
  private readonly binaryPath: string;
  private readonly opts: StartNatsServerOptions;
  private currentPort: number;
  private child: ChildProcess | undefined;
  private exitPromise: Promise<void> = Promise.resolve();
  private hasExited = true;
  private log: string[] = [];

  constructor(binaryPath: string, opts: StartNatsServerOptions) {
    this.binaryPath = binaryPath;
    this.opts = opts;
    this.host = opts.host ?? '127.0.0.1';
    this.storeDir = opts.storeDir;
    this.currentPort = opts.port;
  }

  get port(): number {
    return this.currentPort;
  }
  get url(): string {
    return formatUrl(this.host, this.currentPort);
  }
  get pid(): number {
    return this.child?.pid ?? -1;
  }
  get exited(): boolean {
    return this.hasExited;
  }

  recentLog(): string[] {
    return [...this.log];
  }

  private args(): string[] {
    const jetstream = this.opts.jetstream ?? true;
    return [
      ...(this.opts.configFile ? ['-c', this.opts.configFile] : []),
      '-a',
      this.host,
      // -1 is nats-server's "pick a random port"; 0 would mean its default, 4222.
      '-p',
      String(this.currentPort === 0 ? -1 : this.currentPort),
      '-sd',
      resolve(this.storeDir),
      ...(jetstream ? ['-js'] : []),
      ...(this.opts.extraArgs ?? []),
    ];
  }

  private pushLog(line: string): void {
    this.log.push(line);
    if (this.log.length > LOG_TAIL_LINES) this.log.splice(0, this.log.length - LOG_TAIL_LINES);
  }

  private startFailure(reason: string, cause?: unknown): NaqError {
    const tail = this.log.slice(-ERROR_TAIL_LINES);
    const fatal = this.log.filter((l) => l.includes('[FTL]') || l.includes('[ERR]'));
    const hint = fatal.some((l) => l.includes('address already in use'))
      ? ` (port ${this.currentPort} on ${this.host} is already in use)`
      : '';
    const details = tail.length ? `\nlast nats-server output:\n  ${tail.join('\n  ')}` : ' (it printed nothing)';
    return new NaqError(
      'NATS_SERVER_START_FAILED',
      `${this.binaryPath} ${this.args().join(' ')} ${reason}${hint}${details}`,
      cause === undefined ? undefined : { cause },
    );
  }

  async start(): Promise<void> {
    if (!this.hasExited) throw new NaqError('NATS_SERVER_RUNNING', `nats-server is already running (pid ${this.pid})`);
    this.log = [];
    let logStream: WriteStream | undefined;
    if (this.opts.logFile) {
      logStream = createWriteStream(this.opts.logFile, { flags: 'a' });
      // A log file that cannot be written must not take the server down with it.
      logStream.on('error', () => (logStream = undefined));
    }

    // Run it in its store directory: nats-server 2.9 in a cluster was seen writing consumer
    // metadata (meta.inf, meta.sum) to its working directory, which was the project's.
    const cwd = resolve(this.storeDir);
    await mkdir(cwd, { recursive: true });
    const child = spawn(this.binaryPath, this.args(), { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.hasExited = false;

    let serverId: string | undefined;
    let readyLine = false;
    let sawOutput = false;
    let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: Error | undefined;

    this.exitPromise = new Promise<void>((resolveExit) => {
      // 'close' rather than 'exit': it waits for stderr to drain, so a fatal line is in the log.
      child.once('close', (code, signal) => {
        exitInfo = { code, signal };
        resolveExit();
      });
      // 'exit' is not emitted when the spawn itself fails (ENOENT, EACCES).
      child.once('error', (err) => {
        spawnError = err;
        resolveExit();
      });
    }).then(() => {
      logStream?.end();
      if (this.child === child) this.hasExited = true;
    });

    let partial = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      sawOutput = true;
      logStream?.write(chunk);
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.replace(/\r$/, '');
        this.pushLog(line);
        const id = /\]\s+ID:\s+(\S+)/.exec(line);
        if (id?.[1]) serverId = id[1];
        const listening = /Listening for client connections on .*:(\d+)\s*$/.exec(line);
        if (listening?.[1] && this.currentPort === 0) this.currentPort = Number(listening[1]);
        if (line.includes('Server is ready')) readyLine = true;
      }
    });

    const timeoutMs = this.opts.readyTimeoutMs ?? 10_000;
    const startedAt = Date.now();
    const deadline = startedAt + timeoutMs;
    for (;;) {
      if (spawnError) {
        const code = (spawnError as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw missingBinaryError(this.binaryPath, spawnError);
        throw this.startFailure(`could not be started: ${spawnError.message}`, spawnError);
      }
      if (exitInfo) {
        if (partial) this.pushLog(partial);
        const how = exitInfo.signal ? `signal ${exitInfo.signal}` : `code ${exitInfo.code}`;
        throw this.startFailure(`exited with ${how} before it was ready`);
      }
      // With its log sent elsewhere (log_file in a config) stderr stays silent, and the TCP
      // probe is all there is to go on.
      const logSaysReady = readyLine || (!sawOutput && Date.now() - startedAt > 200);
      if (logSaysReady && this.currentPort !== 0) {
        const info = await readNatsInfo(this.url, 250);
        const ours = info !== undefined && (serverId === undefined || info.server_id === serverId);
        if (ours && exitInfo === undefined) return;
      }
      if (!sawOutput && this.currentPort === 0 && Date.now() - startedAt > 1_000) {
        const err = this.startFailure(
          'logs somewhere other than stderr (log_file in its config?), so the port it picked for port 0 cannot be read; give it a port',
        );
        await this.kill('SIGKILL');
        throw err;
      }
      if (Date.now() > deadline) {
        const err = this.startFailure(`was not ready within ${timeoutMs} ms`);
        await this.kill('SIGKILL');
        throw err;
      }
      await delay(readyLine ? 10 : 20);
    }
  }

  async stop(): Promise<void> {
    if (this.hasExited || !this.child) return this.exitPromise;
    this.child.kill('SIGTERM');
    const killTimer = setTimeout(() => {
      if (!this.hasExited) this.child?.kill('SIGKILL');
    }, STOP_GRACE_MS);
    try {
      await this.exitPromise;
    } finally {
      clearTimeout(killTimer);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.hasExited || !this.child) return this.exitPromise;
    this.child.kill(signal);
    await this.exitPromise;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/**
 * Start a nats-server child and resolve once it accepts clients (and, with JetStream, has
 * logged "Server is ready"). Rejects with NATS_SERVER_MISSING when there is no binary, and
 * NATS_SERVER_START_FAILED (quoting the server's last log lines) when it exits or times out.
 */
export async function startNatsServer(opts: StartNatsServerOptions): Promise<NatsServerProcess> {
  const binary = opts.binary ?? 'nats-server';
  const binaryPath = findNatsServerBinary(binary);
  if (!binaryPath) throw missingBinaryError(binary);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new NaqError('INVALID_ARGUMENT', `invalid nats-server port ${String(opts.port)}`);
  }
  const server = new LocalNatsServer(binaryPath, opts);
  await server.start();
  return server;
}
