import { describe, expect, it } from 'vitest';
import {
  and,
  assign,
  createActor,
  createMachine,
  fromPromise,
  not,
  setup,
  waitFor,
  type AnyStateMachine,
  type AnyStateNode,
} from 'xstate';
import { exportMachines, machineToJSON, machineToMermaid, mermaidBlocks } from '../../src/inspect/machine-export.js';

function notifyOps(): void {}

/**
 * A job lifecycle touching every construct the exporter has to handle:
 * nested and parallel states, finals, a named delay and a numeric one,
 * `always`, an invoke with onDone/onError, named, inline and higher-order
 * guards, and a wildcard actor-error event.
 */
const jobMachine = setup({
  actors: { fetcher: fromPromise(async () => 1) },
  guards: { ok: () => true },
  delays: { backoff: 100 },
}).createMachine({
  id: 'job',
  initial: 'idle',
  context: { attempts: 0 },
  states: {
    idle: {
      on: {
        START: [{ guard: 'ok', target: 'running' }, { target: 'rejected' }],
      },
    },
    rejected: { type: 'final' },
    running: {
      initial: 'fetching',
      tags: ['busy'],
      on: {
        // Any actor error not handled closer in fails the whole job.
        'xstate.error.actor.*': '#job.failed',
        CANCEL: {
          target: 'idle',
          guard: and(['ok', not(({ context }) => context.attempts > 3)]),
          actions: [assign({ attempts: 0 }), notifyOps, () => {}],
        },
      },
      states: {
        fetching: {
          invoke: { src: 'fetcher', onDone: 'checking', onError: 'retrying' },
        },
        retrying: {
          after: { backoff: 'fetching' },
        },
        checking: {
          always: [{ guard: 'ok', target: 'processing' }, { target: '#job.failed' }],
        },
        processing: {
          type: 'parallel',
          onDone: '#job.succeeded',
          states: {
            upload: {
              initial: 'pending',
              states: {
                pending: { on: { UPLOADED: 'done' } },
                done: { type: 'final' },
              },
            },
            notify: {
              initial: 'pending',
              states: {
                pending: { after: { 50: 'done' } },
                done: { type: 'final' },
              },
            },
          },
        },
      },
    },
    succeeded: { type: 'final' },
    failed: { type: 'final', description: 'gave up', meta: { severity: 'high' } },
  },
});

/** Every state node's id and type, found by walking `root.states`. */
function stateIds(machine: AnyStateMachine): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const walk = (node: AnyStateNode): void => {
    out.push([node.id, node.type]);
    for (const child of Object.values(node.states) as AnyStateNode[]) walk(child);
  };
  walk(machine.root);
  return out;
}

/** Trimmed lines strictly inside the `state <header> {` block. */
function blockBody(diagram: string, header: string): string[] {
  const lines = diagram.split('\n').map((l) => l.trim());
  const start = lines.indexOf(`${header} {`);
  if (start < 0) throw new Error(`no block '${header}' in:\n${diagram}`);
  let depth = 0;
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.endsWith('{')) depth++;
    if (line === '}') {
      if (depth === 0) return body;
      depth--;
    }
    body.push(line);
  }
  throw new Error(`unterminated block '${header}'`);
}

/** A fetcher that fails on its first call, to exercise onError + `after`. */
function flakyFetcher() {
  let calls = 0;
  return fromPromise(async () => {
    calls++;
    if (calls === 1) throw new Error('transient');
    return calls;
  });
}

/** Drives a machine down retry -> success and records each state value. */
async function runHappyPath(machine: AnyStateMachine): Promise<{ values: string[]; status: string }> {
  const actor = createActor(machine);
  const values: string[] = [];
  actor.subscribe((s) => {
    const v = JSON.stringify(s.value);
    if (values[values.length - 1] !== v) values.push(v);
  });
  actor.start();
  actor.send({ type: 'START' });
  await waitFor(actor, (s) => s.matches({ running: 'processing' }), { timeout: 2000 });
  actor.send({ type: 'UPLOADED' });
  const final = await waitFor(actor, (s) => s.status !== 'active', { timeout: 2000 });
  actor.stop();
  return { values, status: final.status };
}

describe('machineToMermaid', () => {
  const diagram = machineToMermaid(jobMachine);
  const lines = diagram.split('\n').map((l) => l.trim());

  it('starts a stateDiagram-v2 at the initial state', () => {
    expect(lines[0]).toBe('stateDiagram-v2');
    expect(lines[1]).toBe('[*] --> idle');
  });

  it('writes one labelled line per transition, guards in brackets', () => {
    expect(lines).toContain('idle --> running : START [ok]');
    expect(lines).toContain('idle --> rejected : START');
    expect(lines).toContain('running --> idle : CANCEL [and(ok, not((inline)))]');
  });

  it('labels delayed, eventless and invoke-completion transitions', () => {
    expect(lines).toContain('retrying --> fetching : after backoff');
    expect(lines).toContain('notify_pending --> notify_done : after 50');
    expect(lines).toContain('checking --> processing : always [ok]');
    expect(lines).toContain('checking --> failed : always');
    // `:` would end a Mermaid label, so it is written as the entity code #58;
    expect(lines).toContain('fetching --> checking : done#58; fetcher');
    expect(lines).toContain('fetching --> retrying : error#58; fetcher');
    expect(lines).toContain('running --> failed : error#58; *');
    expect(lines).toContain('processing --> succeeded : onDone');
  });

  it('nests compound states with their own initial and marks finals', () => {
    const running = blockBody(diagram, 'state running');
    expect(running[0]).toBe('[*] --> fetching');
    expect(running).toContain('retrying --> fetching : after backoff');
    // Lines leaving `running` for a top-level state stay outside its block.
    expect(running).not.toContain('checking --> failed : always');
    expect(lines).toContain('failed --> [*]');
    expect(lines).toContain('rejected --> [*]');
    expect(blockBody(diagram, 'state upload')).toEqual([
      '[*] --> upload_pending',
      'state "pending" as upload_pending',
      'state "done" as upload_done',
      'upload_pending --> upload_done : UPLOADED',
      'upload_done --> [*]',
    ]);
  });

  it('separates parallel regions with --', () => {
    const processing = blockBody(diagram, 'state processing');
    const top = processing.filter((l) => l === '--' || l.startsWith('state upload') || l.startsWith('state notify'));
    expect(top).toEqual(['state upload {', '--', 'state notify {']);
    expect(processing).not.toContain('[*] --> upload');
  });

  it('emits only Mermaid-safe ids and labels, deterministically', () => {
    for (const line of lines.filter((l) => l.includes('-->'))) {
      // Mermaid swaps `#code;` entities out before it lexes the line.
      expect(line.replace(/#\w+;/g, '')).toMatch(/^(\[\*\]|\w+) --> (\[\*\]|\w+)( : [^:;#\n]+)?$/);
    }
    expect(machineToMermaid(jobMachine)).toBe(diagram);
  });

  it('sanitises ids, wraps the machine when the root itself has transitions', () => {
    const odd = createMachine({
      id: 'odd machine',
      initial: 'default',
      on: { RESET: '.default' },
      states: {
        default: { on: { 'go:now': 'my-state' } },
        'my-state': {
          initial: 'state',
          states: { state: { on: { NEXT: 'end' } }, end: { type: 'final' } },
        },
        state: {},
      },
    });
    const text = machineToMermaid(odd).split('\n').map((l) => l.trim());
    expect(text).toContain('[*] --> odd_machine');
    expect(text).toContain('state "odd machine" as odd_machine {');
    expect(text).toContain('[*] --> s_default');
    expect(text).toContain('state "my-state" as my_state {');
    expect(text).toContain('s_default --> my_state : go#58;now');
    expect(text).toContain('my_state_state --> end : NEXT');
    expect(text).toContain('state "state" as s_state');
    expect(text).toContain('odd_machine --> s_default : RESET');
  });
});

describe('machineToJSON', () => {
  const json = machineToJSON(jobMachine);
  const text = JSON.stringify(json);

  it('is plain JSON with implementations reduced to names', () => {
    expect(text).not.toContain('function');
    expect(text).not.toContain('[object');
    expect(JSON.parse(text)).toEqual(json);
  });

  it('keeps the authored config shape', () => {
    const running = (json as any).states.running;
    expect((json as any).id).toBe('job');
    expect((json as any).initial).toBe('idle');
    expect((json as any).context).toEqual({ attempts: 0 });
    expect((json as any).states.idle.on.START).toEqual([{ target: 'running', guard: 'ok' }, { target: 'rejected' }]);
    expect(running.tags).toEqual(['busy']);
    expect(running.states.fetching.invoke).toEqual({ src: 'fetcher', onDone: 'checking', onError: 'retrying' });
    expect(running.states.checking.always).toEqual([{ target: 'processing', guard: 'ok' }, { target: '#job.failed' }]);
    expect(running.states.processing.type).toBe('parallel');
    expect(running.states.processing.onDone).toBe('#job.succeeded');
    expect(running.states.processing.states.notify.states.pending.after).toEqual({ 50: 'done' });
    expect(running.on['xstate.error.actor.*']).toBe('#job.failed');
    expect((json as any).states.failed).toEqual({
      type: 'final',
      description: 'gave up',
      meta: { severity: 'high' },
    });
  });

  it('keeps delay names and leaves out the raise/cancel xstate adds for them', () => {
    const retrying = (json as any).states.running.states.retrying;
    expect(retrying).toEqual({ after: { backoff: 'fetching' } });
    // The runtime node does carry them, which is why the config is used.
    const node = jobMachine.root.states.running!.states.retrying!;
    expect(node.entry.map((a: any) => a.type)).toEqual(['xstate.raise']);
  });

  it('names inline guards and actions', () => {
    expect((json as any).states.running.on.CANCEL).toEqual({
      target: 'idle',
      guard: 'and(ok, not((inline)))',
      actions: [{ type: 'xstate.assign', params: { assignment: { attempts: 0 } } }, 'notifyOps', '(inline)'],
    });
  });

  it('round-trips through createMachine with the same states', () => {
    const again = createMachine(JSON.parse(text));
    expect(stateIds(again)).toEqual(stateIds(jobMachine));
    expect(machineToJSON(again)).toEqual(json);
    expect(machineToMermaid(again)).toBe(machineToMermaid(jobMachine));
    // Resolving every initial transition is where a malformed config
    // (e.g. `machine.toJSON()` output) fails, long after createMachine.
    for (const [id] of stateIds(again)) {
      expect(() => again.getStateNodeById(id).initial).not.toThrow();
    }
    expect(createActor(again).getSnapshot().value).toBe('idle');
  });

  it('round-trips to a machine that behaves the same once implementations are provided', async () => {
    const original = await runHappyPath(jobMachine.provide({ actors: { fetcher: flakyFetcher() } }));
    const rebuilt = createMachine(JSON.parse(text)).provide({
      actors: { fetcher: flakyFetcher() },
      guards: { ok: () => true },
      delays: { backoff: 100 },
    } as any);
    const replayed = await runHappyPath(rebuilt);

    expect(original.status).toBe('done');
    expect(original.values).toEqual([
      '"idle"',
      '{"running":"fetching"}',
      '{"running":"retrying"}',
      '{"running":"fetching"}',
      '{"running":{"processing":{"upload":"pending","notify":"pending"}}}',
      '{"running":{"processing":{"upload":"done","notify":"pending"}}}',
      '"succeeded"',
    ]);
    expect(replayed).toEqual(original);
  });
});

describe('exportMachines', () => {
  const other = createMachine({ id: 'light', initial: 'red', states: { red: { on: { NEXT: 'green' } }, green: {} } });

  it('json: one pretty object keyed by machine name', () => {
    const out = exportMachines({ job: jobMachine, light: other }, 'json');
    expect(out).toContain('\n  "job": {');
    expect(JSON.parse(out)).toEqual({ job: machineToJSON(jobMachine), light: machineToJSON(other) });
    expect(Object.keys(JSON.parse(out))).toEqual(['job', 'light']);
  });

  it('mermaid: a %% header per machine, blocks separated by a blank line', () => {
    const out = exportMachines({ job: jobMachine, light: other }, 'mermaid');
    const blocks = mermaidBlocks({ job: jobMachine, light: other });
    expect(blocks.map((b) => b.name)).toEqual(['job', 'light']);
    expect(blocks[1]!.diagram).toBe(['stateDiagram-v2', '  [*] --> red', '  red', '  green', '  red --> green : NEXT'].join('\n'));
    expect(out).toBe(`%% job\n${blocks[0]!.diagram}\n\n%% light\n${blocks[1]!.diagram}`);
  });

  it('rejects an unknown format', () => {
    expect(() => exportMachines({ light: other }, 'yaml' as any)).toThrow(/yaml/);
  });
});
