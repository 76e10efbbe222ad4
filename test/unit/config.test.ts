import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  KNOWN_ENV_VARS,
  configSecrets,
  defaultConfig,
  isNatsUrlConfigured,
  loadConfig,
  natsServers,
  redactConfig,
  resolveConfig,
  type NaqConfigInput,
} from '../../src/config/index.js';
import { connectOptions } from '../../src/actors/nats/connection.js';
import { ConfigError } from '../../src/core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'naq-config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tempFile(ext: string, contents: string): string {
  const file = join(dir, `config-${++fileCount}${ext}`);
  writeFileSync(file, contents);
  return file;
}

/** Runs fn, expects a ConfigError, and returns it for further checks. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

describe('defaults', () => {
  it('fills every key with its documented default', () => {
    expect(defaultConfig()).toEqual({
      prefix: 'naq',
      nats: { name: 'naq', connectTimeoutMs: 5000, pingIntervalMs: 10_000, maxPingsOut: 2 },
      connect: { maxAttempts: 0, initialDelayMs: 250, maxDelayMs: 5000, jitter: 0.2 },
      reconnect: { timeWaitMs: 500, maxAttempts: 0, giveUpAfterMs: 0 },
      embedded: { enabled: true, storeDir: '.naq/nats', host: '127.0.0.1', port: 4222, binary: 'nats-server' },
      log: { level: 'info' },
      supervisor: {
        maxRestarts: 5,
        restartWindowMs: 60_000,
        restartDelayMs: 250,
        restartMaxDelayMs: 10_000,
        stopTimeoutMs: 10_000,
      },
      ops: { timeoutMs: 5000, retryInitialDelayMs: 50, retryMaxDelayMs: 1000 },
      storage: { replicas: 1, storage: 'file' },
      inspect: { enabled: false, port: 5678 },
      jobs: {
        attempts: 1,
        backoffType: 'exponential',
        backoffDelayMs: 1000,
        resultTtlMs: 86_400_000,
        maxPayloadBytes: 1_048_576,
        activeAfterMs: 1000,
        publishTimeoutMs: 5000,
        index: true,
        maxLogLines: 100,
        dedupeMaxTtlMs: 86_400_000,
        flowTtlMs: 604_800_000,
        groupLookahead: 20_000,
        groupConcurrency: 0,
      },
      worker: { queues: ['default'], concurrency: 10, maxAckPending: 1000, heartbeatMs: 5000, ackWaitMs: 30_000, drainGraceMs: 10_000, fireSchedules: true, sandbox: false },
      events: { enabled: true, maxBatch: 200, flushMs: 100, maxBuffered: 50_000, maxAgeMs: 604_800_000 },
      scheduler: { leaderTtlMs: 10_000, renewMs: 3000, electionRetryMs: 1000, maxFireFailures: 5 },
      dashboard: { host: '127.0.0.1', port: 8080 },
      roles: ['producer'],
    });
  });

  it('returns a fresh object each time', () => {
    const a = defaultConfig();
    a.roles.push('worker');
    a.supervisor.maxRestarts = 99;
    expect(defaultConfig().roles).toEqual(['producer']);
    expect(defaultConfig().supervisor.maxRestarts).toBe(5);
  });

  it('resolveConfig() with no input and loadConfig({}) give the defaults', () => {
    expect(resolveConfig()).toEqual(defaultConfig());
    expect(loadConfig({})).toEqual(defaultConfig());
  });
});

describe('resolveConfig', () => {
  it('deep-merges input over defaults, keeping sibling defaults', () => {
    const config = resolveConfig({ supervisor: { maxRestarts: 2 }, nats: { url: 'nats://a:4222' } });
    expect(config.supervisor).toEqual({ ...defaultConfig().supervisor, maxRestarts: 2 });
    expect(config.nats.url).toBe('nats://a:4222');
    expect(config.nats.name).toBe('naq');
  });

  it('ignores undefined values and does not mutate its input', () => {
    const input: NaqConfigInput = { prefix: undefined, log: { level: 'debug', pretty: undefined } };
    const snapshot = structuredClone(input);
    const config = resolveConfig(input);
    expect(config.prefix).toBe('naq');
    expect(config.log).toEqual({ level: 'debug' });
    expect(input).toEqual(snapshot);
  });

  it('removes duplicate roles', () => {
    expect(resolveConfig({ roles: ['worker', 'scheduler', 'worker'] }).roles).toEqual(['worker', 'scheduler']);
  });
});

describe('files', () => {
  it('reads JSON', () => {
    const file = tempFile('.json', JSON.stringify({ prefix: 'jobs', supervisor: { maxRestarts: 7 } }));
    const config = loadConfig({ file });
    expect(config.prefix).toBe('jobs');
    expect(config.supervisor.maxRestarts).toBe(7);
    expect(config.supervisor.restartWindowMs).toBe(60_000);
  });

  it('reads YAML from .yaml and .yml', () => {
    const yaml = ['nats:', '  url: tls://a:4222,tls://b:4222', 'embedded:', '  enabled: false', 'roles: [worker, scheduler]', ''].join('\n');
    for (const ext of ['.yaml', '.yml']) {
      const config = loadConfig({ file: tempFile(ext, yaml) });
      expect(config.nats.url).toBe('tls://a:4222,tls://b:4222');
      expect(config.embedded.enabled).toBe(false);
      expect(config.roles).toEqual(['worker', 'scheduler']);
    }
  });

  it('treats YAML nulls (commented-out sections, empty values) as not set', () => {
    const yaml = ['nats:', '  # url: nats://x:4222', 'log:', '  pretty:', '  level: warn', ''].join('\n');
    const config = loadConfig({ file: tempFile('.yaml', yaml) });
    expect(config.nats.url).toBeUndefined();
    expect(config.log).toEqual({ level: 'warn' });
    expect(loadConfig({ file: tempFile('.yaml', '# nothing yet\n') })).toEqual(defaultConfig());
  });

  it('an unknown key in a file names the dotted key', () => {
    const file = tempFile('.yaml', 'supervisor:\n  maxRestart: 3\n');
    const err = configError(() => loadConfig({ file }));
    expect(err.key).toBe('supervisor.maxRestart');
    expect(err.message).toContain('supervisor.maxRestart');
    expect(err.message).toContain('unknown key');
    expect(err.message).toContain('maxRestarts');
    expect(err.message).toContain(file);
  });

  it('an unknown top-level section is an error', () => {
    const err = configError(() => loadConfig({ file: tempFile('.json', '{"workers": {}}') }));
    expect(err.key).toBe('workers');
  });

  it('a "__proto__" key is reported, not merged into the prototype', () => {
    const err = configError(() => loadConfig({ file: tempFile('.json', '{"__proto__": {"prefix": "evil"}}') }));
    expect(err.key).toBe('__proto__');
    expect(({} as { prefix?: string }).prefix).toBeUndefined();
  });

  it('an unparsable file names the file', () => {
    const json = tempFile('.json', '{"prefix": ');
    const jsonErr = configError(() => loadConfig({ file: json }));
    expect(jsonErr.key).toBe(json);
    expect(jsonErr.message).toContain('expected valid JSON');

    const yaml = tempFile('.yaml', 'nats:\n  url: [unclosed\n');
    const yamlErr = configError(() => loadConfig({ file: yaml }));
    expect(yamlErr.key).toBe(yaml);
    expect(yamlErr.message).toContain('expected valid YAML');
  });

  it('a missing file, an unknown extension or a non-mapping document names the file', () => {
    const missing = join(dir, 'does-not-exist.json');
    expect(configError(() => loadConfig({ file: missing })).key).toBe(missing);

    const toml = tempFile('.toml', 'prefix = "x"');
    const tomlErr = configError(() => loadConfig({ file: toml }));
    expect(tomlErr.key).toBe(toml);
    expect(tomlErr.message).toContain('.json, .yaml or .yml');

    const list = tempFile('.yaml', '- a\n- b\n');
    expect(configError(() => loadConfig({ file: list })).key).toBe(list);
  });
});

describe('bad values', () => {
  it.each([
    [{ supervisor: { maxRestarts: -1 } }, 'supervisor.maxRestarts', 'expected an integer >= 0, got -1'],
    [{ supervisor: { maxRestarts: 1.5 } }, 'supervisor.maxRestarts', 'expected an integer >= 0, got 1.5'],
    [{ log: { level: 'loud' } }, 'log.level', 'got "loud"'],
    [{ prefix: 'a.b' }, 'prefix', 'got "a.b"'],
    [{ storage: { replicas: 7 } }, 'storage.replicas', 'expected an integer from 1 to 5, got 7'],
    [{ embedded: { port: 70000 } }, 'embedded.port', 'expected an integer from 0 to 65535, got 70000'],
    [{ connect: { jitter: 2 } }, 'connect.jitter', 'expected a number from 0 to 1, got 2'],
    [{ embedded: { enabled: 'yes' } }, 'embedded.enabled', 'expected true or false, got "yes"'],
    [{ roles: [] }, 'roles', 'expected a non-empty list'],
    [{ roles: ['worker', 'boss'] }, 'roles[1]', 'got "boss"'],
    [{ nats: { url: 'http://example.com' } }, 'nats.url', 'nats://'],
    [{ nats: { url: ' , ' } }, 'nats.url', 'one or more'],
    [{ ops: { timeoutMs: 0 } }, 'ops.timeoutMs', 'milliseconds from 1'],
    [{ reconnect: { timeWaitMs: 3_000_000_000 } }, 'reconnect.timeWaitMs', 'to 2147483647'],
    [{ nats: { pingIntervalMs: 0 } }, 'nats.pingIntervalMs', 'expected an integer number of milliseconds from 100'],
    [{ nats: { pingIntervalMs: 99 } }, 'nats.pingIntervalMs', 'got 99'],
    [{ nats: { pingIntervalMs: '10s' } }, 'nats.pingIntervalMs', 'got "10s"'],
    [{ nats: { maxPingsOut: 0 } }, 'nats.maxPingsOut', 'expected an integer >= 1, got 0'],
    [{ nats: { maxPingsOut: 2.5 } }, 'nats.maxPingsOut', 'expected an integer >= 1, got 2.5'],
    [{ supervisor: 5 }, 'supervisor', 'expected an object, got 5'],
  ])('%j → %s', (input, key, expected) => {
    const err = configError(() => resolveConfig(input as NaqConfigInput));
    expect(err.key).toBe(key);
    expect(err.message).toContain(`invalid config ${key}: `);
    expect(err.message).toContain(expected);
  });

  it('log.level lists the allowed levels', () => {
    const err = configError(() => resolveConfig({ log: { level: 'loud' as never } }));
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
      expect(err.message).toContain(`"${level}"`);
    }
  });

  it('certFile without keyFile names the missing key', () => {
    const err = configError(() => resolveConfig({ nats: { tls: { certFile: '/c.pem' } } }));
    expect(err.key).toBe('nats.tls.keyFile');
    expect(err.message).toContain('nats.tls.certFile');
    expect(resolveConfig({ nats: { tls: { certFile: '/c.pem', keyFile: '/k.pem' } } }).nats.tls).toEqual({
      certFile: '/c.pem',
      keyFile: '/k.pem',
    });
  });

  it('several problems: the first key is thrown, the others are in the message', () => {
    const err = configError(() => resolveConfig({ prefix: 'a b', supervisor: { maxRestarts: -2 } }));
    expect(err.key).toBe('prefix');
    expect(err.message).toContain('supervisor.maxRestarts: expected an integer >= 0, got -2');
  });

  it('does not echo a password from a bad nats.url', () => {
    const err = configError(() => resolveConfig({ nats: { url: 'http://me:hunter2@x:4222' } }));
    expect(err.key).toBe('nats.url');
    expect(err.message).not.toContain('hunter2');
  });

  it('accepts the documented nats.url forms', () => {
    const url = 'nats://a:4222, tls://b:4443,ws://c:80,wss://d:443,e:4222,[::1]:4222,nats://u:p@f:4222';
    expect(resolveConfig({ nats: { url } }).nats.url).toBe(url);
  });
});

describe('environment', () => {
  it('reads the well-known names', () => {
    const config = loadConfig({
      env: {
        NAQ_NATS_URL: 'nats://n1:4222,nats://n2:4222',
        NAQ_PREFIX: 'envq',
        NAQ_LOG_LEVEL: 'debug',
        NAQ_NATS_USER: 'alice',
        NAQ_NATS_PASSWORD: 's3cret',
        NAQ_NATS_TOKEN: 'tok',
        NAQ_NATS_NKEY_SEED: 'SUAseed',
        NAQ_NATS_CREDS: '/etc/naq.creds',
        NAQ_TLS_CA: '/ca.pem',
        NAQ_TLS_CERT: '/cert.pem',
        NAQ_TLS_KEY: '/key.pem',
        NAQ_REPLICAS: '3',
        NAQ_ROLES: 'worker, scheduler',
      },
    });
    expect(config.prefix).toBe('envq');
    expect(config.log.level).toBe('debug');
    expect(config.nats).toEqual({
      url: 'nats://n1:4222,nats://n2:4222',
      name: 'naq',
      user: 'alice',
      password: 's3cret',
      token: 'tok',
      nkeySeed: 'SUAseed',
      credsFile: '/etc/naq.creds',
      tls: { caFile: '/ca.pem', certFile: '/cert.pem', keyFile: '/key.pem' },
      connectTimeoutMs: 5000,
      pingIntervalMs: 10_000,
      maxPingsOut: 2,
    });
    expect(config.storage.replicas).toBe(3);
    expect(config.roles).toEqual(['worker', 'scheduler']);
  });

  it('reads the generic NAQ_<SECTION>__<KEY> form and coerces numbers and booleans', () => {
    const config = loadConfig({
      env: {
        NAQ_SUPERVISOR__MAX_RESTARTS: '3',
        NAQ_EMBEDDED__ENABLED: 'false',
        NAQ_NATS__CONNECT_TIMEOUT_MS: '100',
        NAQ_NATS__PING_INTERVAL_MS: '2000',
        NAQ_NATS__MAX_PINGS_OUT: '3',
        NAQ_CONNECT__JITTER: '0.5',
        NAQ_LOG__PRETTY: 'true',
        NAQ_STORAGE__STORAGE: 'memory',
        NAQ_INSPECT__RECORD_FILE: '/tmp/rec.jsonl',
        NAQ_WORKER__SANDBOX: 'yes',
      },
    });
    expect(config.supervisor.maxRestarts).toBe(3);
    expect(config.embedded.enabled).toBe(false);
    expect(config.nats.connectTimeoutMs).toBe(100);
    expect(config.nats.pingIntervalMs).toBe(2000);
    expect(config.nats.maxPingsOut).toBe(3);
    expect(config.connect.jitter).toBe(0.5);
    expect(config.log.pretty).toBe(true);
    expect(config.storage.storage).toBe('memory');
    expect(config.inspect.recordFile).toBe('/tmp/rec.jsonl');
    expect(config.worker.sandbox).toBe(true);
  });

  it('a bad env value names the variable and the expected form', () => {
    const err = configError(() => loadConfig({ env: { NAQ_SUPERVISOR__MAX_RESTARTS: 'abc' } }));
    expect(err.key).toBe('NAQ_SUPERVISOR__MAX_RESTARTS');
    expect(err.message).toContain('expected an integer >= 0, got "abc"');
    expect(err.message).toContain('supervisor.maxRestarts');

    const bool = configError(() => loadConfig({ env: { NAQ_EMBEDDED__ENABLED: 'maybe' } }));
    expect(bool.key).toBe('NAQ_EMBEDDED__ENABLED');
    expect(bool.message).toContain('expected true or false, got "maybe"');

    const roles = configError(() => loadConfig({ env: { NAQ_ROLES: 'worker,boss' } }));
    expect(roles.key).toBe('NAQ_ROLES');
    expect(roles.message).toContain('got "boss"');

    const replicas = configError(() => loadConfig({ env: { NAQ_REPLICAS: '9' } }));
    expect(replicas.key).toBe('NAQ_REPLICAS');

    const pings = configError(() => loadConfig({ env: { NAQ_NATS__PING_INTERVAL_MS: '10s' } }));
    expect(pings.key).toBe('NAQ_NATS__PING_INTERVAL_MS');
    expect(pings.message).toContain('nats.pingIntervalMs');
    expect(pings.message).toContain('milliseconds from 100');

    const missed = configError(() => loadConfig({ env: { NAQ_NATS__MAX_PINGS_OUT: '0' } }));
    expect(missed.key).toBe('NAQ_NATS__MAX_PINGS_OUT');
    expect(missed.message).toContain('expected an integer >= 1, got 0');
  });

  it('an unknown NAQ_ variable is an error naming it, with a suggestion', () => {
    const err = configError(() => loadConfig({ env: { NAQ_SUPERVISOR__MAX_RESTART: '3' } }));
    expect(err.key).toBe('NAQ_SUPERVISOR__MAX_RESTART');
    expect(err.message).toContain('NAQ_SUPERVISOR__MAX_RESTARTS');
    // keys with a well-known name have no generic spelling
    expect(configError(() => loadConfig({ env: { NAQ_LOG__LEVEL: 'debug' } })).message).toContain('NAQ_LOG_LEVEL');
    expect(configError(() => loadConfig({ env: { NAQ_WHATEVER: 'x' } })).key).toBe('NAQ_WHATEVER');
  });

  it('ignores NAQ_TEST_, NAQ_INTERNAL_, non-NAQ variables, undefined and empty values', () => {
    const config = loadConfig({
      env: { NAQ_TEST_SERVER: 'x', NAQ_INTERNAL_FOO: 'y', HOME: '/root', NAQ_PREFIX: undefined, NAQ_NATS_URL: '' },
    });
    expect(config).toEqual(defaultConfig());
  });

  it('every KNOWN_ENV_VARS entry is accepted', () => {
    const names = KNOWN_ENV_VARS.map((v) => v.name);
    expect(names).toContain('NAQ_NATS_URL');
    expect(names).toContain('NAQ_SUPERVISOR__MAX_RESTARTS');
    expect(names).not.toContain('NAQ_LOG__LEVEL');
    for (const v of KNOWN_ENV_VARS) {
      try {
        loadConfig({ env: { [v.name]: 'not-a-valid-number-or-level' } });
      } catch (err) {
        // a rejected value is fine (and must name the variable); an unknown variable is not
        expect((err as ConfigError).message).not.toContain('unknown environment variable');
        // except a lone TLS cert/key or dashboard user/password, whose error names the missing partner key
        if (!/^NAQ_TLS_(CERT|KEY)$|^NAQ_DASHBOARD__(USER|PASSWORD)$/.test(v.name)) expect((err as ConfigError).key).toBe(v.name);
      }
    }
  });
});

describe('precedence', () => {
  it('defaults < file < env < flags', () => {
    const file = tempFile(
      '.json',
      JSON.stringify({ prefix: 'file', supervisor: { maxRestarts: 1, restartDelayMs: 11 }, ops: { timeoutMs: 111 } }),
    );
    const env = { NAQ_PREFIX: 'env', NAQ_SUPERVISOR__MAX_RESTARTS: '2' };
    const flags: NaqConfigInput = { prefix: 'flags', supervisor: { maxRestarts: undefined }, log: { level: undefined } };

    const config = loadConfig({ file, env, flags });
    expect(config.prefix).toBe('flags'); // flags beat env
    expect(config.supervisor.maxRestarts).toBe(2); // env beats file; undefined flag ignored
    expect(config.supervisor.restartDelayMs).toBe(11); // file beats defaults
    expect(config.ops.timeoutMs).toBe(111);
    expect(config.log.level).toBe('info'); // default survives
    expect(config.supervisor.stopTimeoutMs).toBe(10_000);

    expect(loadConfig({ file, env }).prefix).toBe('env');
    expect(loadConfig({ file }).prefix).toBe('file');
  });

  it('arrays replace rather than concatenate', () => {
    const file = tempFile('.yaml', 'roles: [producer, worker]\n');
    expect(loadConfig({ file, flags: { roles: ['scheduler'] } }).roles).toEqual(['scheduler']);
    expect(loadConfig({ file, env: { NAQ_ROLES: 'worker' } }).roles).toEqual(['worker']);
  });

  it('an error is attributed to the layer whose value won', () => {
    const file = tempFile('.json', JSON.stringify({ supervisor: { maxRestarts: -1 } }));
    // the bad file value is overridden, so there is no error at all
    expect(loadConfig({ file, env: { NAQ_SUPERVISOR__MAX_RESTARTS: '4' } }).supervisor.maxRestarts).toBe(4);
    const fromFile = configError(() => loadConfig({ file }));
    expect(fromFile.key).toBe('supervisor.maxRestarts');
    expect(fromFile.message).toContain(file);
    const fromFlags = configError(() =>
      loadConfig({ file, env: { NAQ_SUPERVISOR__MAX_RESTARTS: '4' }, flags: { supervisor: { maxRestarts: -3 } } }),
    );
    expect(fromFlags.key).toBe('supervisor.maxRestarts');
    expect(fromFlags.message).toContain('got -3');
    expect(fromFlags.message).toContain('from flags');
  });
});

describe('NATS servers', () => {
  it('not configured: the local default', () => {
    const config = defaultConfig();
    expect(isNatsUrlConfigured(config)).toBe(false);
    expect(natsServers(config)).toEqual(['nats://127.0.0.1:4222']);
  });

  it('configured: the comma-separated list, trimmed', () => {
    const config = resolveConfig({ nats: { url: 'nats://a:4222, b:4222 ,tls://c:4443' } });
    expect(isNatsUrlConfigured(config)).toBe(true);
    expect(natsServers(config)).toEqual(['nats://a:4222', 'b:4222', 'tls://c:4443']);
  });

  it('the server list never carries credentials', () => {
    const config = resolveConfig({ nats: { url: 'nats://u:pw@a:4222,tls://u:pw@b:4443' } });
    expect(natsServers(config)).toEqual(['nats://a:4222', 'tls://b:4443']);
  });

  it('the ping settings reach the client, so a silent link is noticed in seconds, not minutes', async () => {
    expect(await connectOptions(defaultConfig())).toMatchObject({ pingInterval: 10_000, maxPingOut: 2 });
    const config = resolveConfig({ nats: { pingIntervalMs: 500, maxPingsOut: 3 } });
    expect(await connectOptions(config)).toMatchObject({ pingInterval: 500, maxPingOut: 3 });
  });
});

describe('secrets', () => {
  const config = resolveConfig({
    nats: {
      url: 'nats://bob:pa%40ss@a:4222, tls://bob:pa%40ss@b:4443,c:4222',
      user: 'alice',
      password: 'hunter2',
      token: 't0k3n',
      nkeySeed: 'SUASEED',
      credsFile: '/etc/naq.creds',
      tls: { caFile: '/ca.pem' },
    },
  });

  it('redactConfig hides secrets, keeps users and file paths, and leaves the input alone', () => {
    const redacted = redactConfig(config);
    expect(redacted.nats).toEqual({
      url: 'nats://bob:[redacted]@a:4222, tls://bob:[redacted]@b:4443,c:4222',
      name: 'naq',
      user: 'alice',
      password: '[redacted]',
      token: '[redacted]',
      nkeySeed: '[redacted]',
      credsFile: '/etc/naq.creds',
      tls: { caFile: '/ca.pem' },
      connectTimeoutMs: 5000,
      pingIntervalMs: 10_000,
      maxPingsOut: 2,
    });
    expect(config.nats.password).toBe('hunter2');
    const text = JSON.stringify(redacted);
    for (const secret of configSecrets(config)) expect(text).not.toContain(secret);
  });

  it("the dashboard's token and password are secrets too; its user is not", () => {
    const withDashboard = loadConfig({ flags: { dashboard: { token: 'dash-tok', user: 'ops', password: 'dash-pw' } } });
    expect(configSecrets(withDashboard).sort()).toEqual(['dash-pw', 'dash-tok']);
    expect(redactConfig(withDashboard).dashboard).toEqual({ host: '127.0.0.1', port: 8080, token: '[redacted]', user: 'ops', password: '[redacted]' });
    const err = configError(() => loadConfig({ flags: { dashboard: { password: 'dash-pw' } } }));
    expect(err.message).toContain('dashboard.user');
    expect(err.message).not.toContain('dash-pw');
  });

  it('redactConfig leaves a config without secrets unchanged', () => {
    expect(redactConfig(defaultConfig())).toEqual(defaultConfig());
  });

  it('configSecrets lists every secret, including URL-embedded ones raw and decoded', () => {
    expect(configSecrets(config).sort()).toEqual(['SUASEED', 'hunter2', 'pa%40ss', 'pa@ss', 't0k3n'].sort());
    expect(configSecrets(defaultConfig())).toEqual([]);
  });
});

describe('NATS URL credentials', () => {
  /** What the client is given: servers and credentials only. */
  async function clientGets(url: string) {
    const { servers, user, pass, token } = await connectOptions(resolveConfig({ nats: { url } }));
    return { servers, user, pass, token };
  }

  /** Expects nats.url to be refused, and the message (however it is printed) to hold none of the secrets. */
  function refused(url: string, secrets: string[]): ConfigError {
    const err = configError(() => resolveConfig({ nats: { url } }));
    expect(err.key).toBe('nats.url');
    const shown = [err.message, String(err), err.stack ?? '', JSON.stringify(err)].join('\n');
    for (const secret of secrets) expect(shown).not.toContain(secret);
    return err;
  }

  it('percent-encoded user info is decoded before it reaches the client', async () => {
    expect(await clientGets('nats://u:p%40ss@host:4222')).toEqual({
      servers: ['nats://host:4222'],
      user: 'u',
      pass: 'p@ss',
      token: undefined,
    });
    expect(await clientGets('nats://us%3Aer:a%3Ab%25c%2Cd@host:4222')).toMatchObject({ user: 'us:er', pass: 'a:b%c,d' });
    // only the first raw ':' separates user from password
    expect(await clientGets('nats://u:a:b@host:4222')).toMatchObject({ user: 'u', pass: 'a:b' });
  });

  it('redaction hides the password as written and as decoded', () => {
    const config = resolveConfig({ nats: { url: 'nats://u:p%40ss@host:4222' } });
    expect(configSecrets(config).sort()).toEqual(['p%40ss', 'p@ss']);
    const redacted = redactConfig(config);
    expect(redacted.nats.url).toBe('nats://u:[redacted]@host:4222');
    const text = JSON.stringify(redacted);
    expect(text).not.toContain('p%40ss');
    expect(text).not.toContain('p@ss');
  });

  it('a token URL gives the client a token', async () => {
    expect(await clientGets('nats://s3cr3t-tok@host:4222')).toEqual({
      servers: ['nats://host:4222'],
      user: undefined,
      pass: undefined,
      token: 's3cr3t-tok',
    });
    const config = resolveConfig({ nats: { url: 'tls://s3cr3t-tok@host:4443' } });
    expect(redactConfig(config).nats.url).toBe('tls://[redacted]@host:4443');
    expect(configSecrets(config)).toEqual(['s3cr3t-tok']);
    expect((await connectOptions(config)).tls).toEqual({});
  });

  it('keeps the port, and a host without port or path, as written', async () => {
    expect((await clientGets('nats://u:pw@host:4333')).servers).toEqual(['nats://host:4333']);
    expect(await clientGets('nats://u:pw@host')).toMatchObject({ servers: ['nats://host'], user: 'u', pass: 'pw' });
    expect((await clientGets('wss://u:pw@[::1]:443/ws')).servers).toEqual(['wss://[::1]:443/ws']);
    expect((await clientGets('host:4222, nats://other')).servers).toEqual(['host:4222', 'nats://other']);
  });

  it('one set of credentials serves every URL of the list', async () => {
    // the same password spelled two ways is the same password
    expect(await clientGets('nats://u:pw@a:4222,nats://u:p%77@b:4222,c:4222')).toEqual({
      servers: ['nats://a:4222', 'nats://b:4222', 'c:4222'],
      user: 'u',
      pass: 'pw',
      token: undefined,
    });
  });

  it('explicit nats.user / nats.password win over the URL', async () => {
    const config = resolveConfig({ nats: { url: 'nats://u:from-url@host:4222', user: 'alice', password: 'explicit' } });
    expect(await connectOptions(config)).toMatchObject({ servers: ['nats://host:4222'], user: 'alice', pass: 'explicit' });
  });

  it('refuses an unencoded "@" in a password, naming nats.url and showing the URL redacted', () => {
    const err = refused('nats://u:p@ss@host:4222', ['p@ss', 'ss@host', ':p@']);
    expect(err.message).toContain('"nats://[redacted]@host:4222"');
    expect(err.message).toContain('percent-encode');
    expect(err.message).toContain('%40');
    // not just the first URL of a list
    const second = refused('nats://a:4222, nats://u:p@ss@b:4222', ['p@ss', 'ss@b']);
    expect(second.message).toContain('2nd URL');
  });

  it('names the variable when the URL came from the environment', () => {
    const err = configError(() => loadConfig({ env: { NAQ_NATS_URL: 'nats://u:p@ss@host:4222' } }));
    expect(err.key).toBe('NAQ_NATS_URL');
    expect(err.message).toContain('sets nats.url');
    expect(err.message).not.toContain('p@ss');
  });

  it.each([
    ['an "@" after a "/"', 'nats://u:pa/ss@host:4222', ['pa/ss', 'ss@host']],
    ['a raw "%"', 'nats://u:100%sure@host:4222', ['100%sure']],
    ['a raw "," (the list splits inside the password)', 'nats://u:pa,ss@host:4222', ['pa,ss', 'ss@host']],
    ['user info without a scheme', 'tok3n@host:4222', ['tok3n']],
  ])('refuses %s without printing the secret', (_, url, secrets) => {
    expect(refused(url, secrets).message).toContain('percent-encode');
  });

  it('refuses different credentials in two URLs, since the client sends one set to all', () => {
    const err = refused('nats://u:first-pw@a:4222,nats://u:second-pw@b:4222', ['first-pw', 'second-pw']);
    expect(err.message).toContain('same credentials');
    expect(err.message).toContain('nats://u:[redacted]@a:4222,nats://u:[redacted]@b:4222');
    refused('nats://u:pw@a:4222,nats://tok@b:4222', ['tok@', ':pw']);
  });

  it('a config built by hand around validation is refused at connect, without the secret', async () => {
    const config = defaultConfig();
    config.nats.url = 'nats://u:p@ss@host:4222';
    const err = await connectOptions(config).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).not.toContain('p@ss');
    expect(configSecrets(config)).toEqual(expect.arrayContaining(['p@ss']));
  });
});
