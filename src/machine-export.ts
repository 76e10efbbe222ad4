/**
 * Exports the project's XState machines for `naq machines`: as JSON that
 * `createMachine` (and Stately's editor) accept, or as Mermaid
 * `stateDiagram-v2` text for README code blocks.
 *
 * The JSON is rebuilt from each state node's *authored* `config`, not from
 * `machine.toJSON()` / `StateNode.definition`. Those definition objects are
 * runtime shapes: `after` and invoke `onDone`/`onError` are folded into `on`
 * under generated event names (`xstate.after.backoff.job.retrying`), `after`
 * injects `xstate.raise`/`xstate.cancel` into `entry`/`exit`, targets become
 * `#id` arrays, `initial` becomes a transition object, and function guards and
 * inline actions vanish or turn into `null` when stringified. Feeding that back
 * into `createMachine` does not throw but the machine breaks on first use.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };
export type JSONObject = { [key: string]: JSONValue };

export type MachineExportFormat = 'json' | 'mermaid';

export interface MermaidBlock {
  name: string;
  diagram: string;
}

const INLINE = '(inline)';

// ---------------------------------------------------------------------------
// Plain-JSON helpers
// ---------------------------------------------------------------------------

type FunctionMode = 'omit' | 'name';

/**
 * JS infers a function's name from the property it is assigned to, so
 * `guard: () => true` is named "guard" and `entry: () => {}` "entry". Such a
 * name describes the slot, not the behaviour, so it is reported as inline.
 */
function functionName(fn: Function, slot?: string): string {
  const name = fn.name.replace(/^bound /, '');
  if (name === '' || name === 'anonymous' || name === slot) return INLINE;
  return name;
}

/**
 * Deep copy to plain JSON. Cycles are cut (the repeated reference is dropped)
 * but shared, acyclic references are copied each time they appear.
 */
function toPlain(value: unknown, fnMode: FunctionMode, slot?: string, stack: object[] = []): JSONValue | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // `after: { [Infinity]: ... }` or NaN would silently become null in JSON.
      return Number.isFinite(value) ? value : String(value);
    case 'bigint':
      return value.toString();
    case 'function':
      return fnMode === 'name' ? functionName(value, slot) : undefined;
    case 'undefined':
    case 'symbol':
      return undefined;
  }
  if (value === null) return null;
  const obj = value as object;
  if (stack.includes(obj)) return undefined;
  stack.push(obj);
  try {
    if (Array.isArray(obj)) {
      return obj.map((item) => toPlain(item, fnMode, undefined, stack) ?? null);
    }
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? null : obj.toISOString();
    if (obj instanceof Map) {
      return toPlain(Object.fromEntries(obj), fnMode, slot, stack);
    }
    if (obj instanceof Set) return toPlain([...obj], fnMode, slot, stack);
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const replaced: unknown = toJSON.call(obj);
      return replaced === obj ? undefined : toPlain(replaced, fnMode, slot, stack);
    }
    const out: JSONObject = {};
    for (const [key, item] of Object.entries(obj)) {
      const plain = toPlain(item, fnMode, key, stack);
      if (plain !== undefined) out[key] = plain;
    }
    return out;
  } finally {
    stack.pop();
  }
}

function setIfDefined(target: JSONObject, key: string, value: JSONValue | undefined): void {
  if (value !== undefined) target[key] = value;
}

function toArray<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

// ---------------------------------------------------------------------------
// Guards, actions, actors
// ---------------------------------------------------------------------------

/**
 * Higher-order guards (`and`, `or`, `not`, `stateIn`) are functions carrying a
 * `check` plus their operands; they are rendered as a readable expression.
 */
function guardLabel(guard: unknown): string {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const g = guard as Function & { check?: unknown; guards?: unknown[]; stateValue?: unknown };
    if (typeof g.check === 'function') {
      if ('stateValue' in g) {
        const sv = g.stateValue;
        return `stateIn(${typeof sv === 'string' ? sv : JSON.stringify(toPlain(sv, 'omit') ?? null)})`;
      }
      if (Array.isArray(g.guards)) {
        return `${g.name || 'guard'}(${g.guards.map(guardLabel).join(', ')})`;
      }
    }
    return functionName(g, 'guard');
  }
  if (isRecord(guard) && typeof guard.type === 'string') return guard.type;
  return INLINE;
}

function guardToJSON(guard: unknown): JSONValue | undefined {
  if (guard === undefined) return undefined;
  if (isRecord(guard) && typeof guard.type === 'string') {
    const params = toPlain(guard.params, 'omit');
    return params === undefined ? guard.type : { type: guard.type, params };
  }
  return guardLabel(guard);
}

/** Name under which `setup({ actors })` registered a logic object, if any. */
function actorName(machine: AnyStateMachine, src: unknown): string | undefined {
  if (typeof src === 'string') return src;
  const actors = (machine.implementations?.actors ?? {}) as Record<string, unknown>;
  for (const [name, logic] of Object.entries(actors)) {
    if (logic === src) return name;
  }
  return undefined;
}

// Own properties that xstate's action creators hang on the returned function;
// these are the ones worth showing (delays, event names, targets, ids).
const BUILTIN_ACTION_PARAMS = ['event', 'delay', 'id', 'to', 'sendId', 'label', 'src', 'systemId', 'actorRef', 'assignment'];

function actionToJSON(machine: AnyStateMachine, action: unknown, slot: string): JSONValue | undefined {
  if (action === undefined || action === null) return undefined;
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    const fn = action as Function & Record<string, unknown>;
    if (typeof fn.type === 'string' && typeof fn.resolve === 'function') {
      const params: JSONObject = {};
      for (const key of BUILTIN_ACTION_PARAMS) {
        if (!(key in fn) || fn[key] === undefined) continue;
        const raw = fn[key];
        const plain = key === 'src' ? (actorName(machine, raw) ?? INLINE) : toPlain(raw, 'name', key);
        setIfDefined(params, key, plain);
      }
      return Object.keys(params).length > 0 ? { type: fn.type, params } : fn.type;
    }
    return functionName(fn, slot);
  }
  if (isRecord(action) && typeof action.type === 'string') {
    const params = toPlain(action.params, 'omit');
    return params === undefined ? action.type : { type: action.type, params };
  }
  return INLINE;
}

function actionsToJSON(machine: AnyStateMachine, actions: unknown, slot: string): JSONValue | undefined {
  const list = toArray(actions)
    .map((a) => actionToJSON(machine, a, slot))
    .filter((a): a is JSONValue => a !== undefined);
  return list.length > 0 ? list : undefined;
}

// ---------------------------------------------------------------------------
// Machine -> JSON config
// ---------------------------------------------------------------------------

function targetToJSON(target: unknown): JSONValue | undefined {
  if (target === undefined) return undefined;
  const one = (t: unknown): string => {
    if (typeof t === 'string') return t;
    // A StateNode passed directly as a target: refer to it by id.
    if (isRecord(t) && typeof t.id === 'string') return `#${t.id}`;
    return String(t);
  };
  return Array.isArray(target) ? target.map(one) : one(target);
}

function transitionToJSON(machine: AnyStateMachine, transition: unknown): JSONValue {
  if (typeof transition === 'string') return transition;
  // `on: { X: undefined }` is a forbidden (targetless, no-op) transition.
  if (!isRecord(transition)) return {};
  const out: JSONObject = {};
  setIfDefined(out, 'target', targetToJSON(transition.target));
  setIfDefined(out, 'guard', guardToJSON(transition.guard));
  setIfDefined(out, 'actions', actionsToJSON(machine, transition.actions, 'actions'));
  if (typeof transition.reenter === 'boolean') out.reenter = transition.reenter;
  if (typeof transition.description === 'string') out.description = transition.description;
  setIfDefined(out, 'meta', toPlain(transition.meta, 'omit'));
  return out;
}

function transitionsToJSON(machine: AnyStateMachine, value: unknown): JSONValue {
  if (Array.isArray(value)) return value.map((t) => transitionToJSON(machine, t));
  return transitionToJSON(machine, value);
}

/**
 * An `on` entry set to undefined still blocks the event (a forbidden
 * transition, kept as `{}`); an undefined `after` entry creates nothing.
 */
function transitionMapToJSON(machine: AnyStateMachine, map: unknown, keepUndefined: boolean): JSONObject | undefined {
  if (!isRecord(map)) return undefined;
  const out: JSONObject = {};
  for (const [key, value] of Object.entries(map)) {
    if (value !== undefined || keepUndefined) out[key] = transitionsToJSON(machine, value);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function invokeToJSON(machine: AnyStateMachine, invoke: Record<string, unknown>): JSONObject {
  const out: JSONObject = {};
  if (typeof invoke.id === 'string') out.id = invoke.id;
  out.src = actorName(machine, invoke.src) ?? INLINE;
  if (typeof invoke.systemId === 'string') out.systemId = invoke.systemId;
  setIfDefined(out, 'input', toPlain(invoke.input, 'omit'));
  for (const key of ['onDone', 'onError', 'onSnapshot'] as const) {
    if (invoke[key] !== undefined) out[key] = transitionsToJSON(machine, invoke[key]);
  }
  return out;
}

function stateNodeToJSON(node: AnyStateNode): JSONObject {
  const machine = node.machine as AnyStateMachine;
  const config = node.config as Record<string, unknown>;
  const out: JSONObject = {};

  if (!node.parent) out.id = machine.id;
  else if (typeof config.id === 'string') out.id = config.id;

  if (node.type === 'parallel' || node.type === 'final' || node.type === 'history') out.type = node.type;
  if (node.type === 'history') {
    out.history = node.history === 'deep' ? 'deep' : 'shallow';
    setIfDefined(out, 'target', targetToJSON(config.target));
  }

  if (typeof config.initial === 'string') out.initial = config.initial;
  else if (isRecord(config.initial)) {
    const initial = transitionToJSON(machine, config.initial);
    if (isRecord(initial) && !Array.isArray(initial)) {
      out.initial = initial.actions === undefined && initial.description === undefined && initial.meta === undefined
        ? (initial.target ?? null)
        : initial;
    }
  }

  if (!node.parent) {
    if (machine.version !== undefined) out.version = machine.version;
    // A context factory function has no JSON form; plain context does.
    setIfDefined(out, 'context', toPlain(config.context, 'omit'));
  }
  if (typeof node.description === 'string') out.description = node.description;
  if (node.tags.length > 0) out.tags = [...node.tags];
  setIfDefined(out, 'meta', toPlain(node.meta, 'omit'));

  // `node.entry`/`node.exit` include the raise/cancel pairs xstate injects for
  // `after`; the config holds only what was written.
  setIfDefined(out, 'entry', actionsToJSON(machine, config.entry, 'entry'));
  setIfDefined(out, 'exit', actionsToJSON(machine, config.exit, 'exit'));

  const invokes = toArray(config.invoke as unknown).filter(isRecord);
  if (invokes.length > 0) {
    const list = invokes.map((inv) => invokeToJSON(machine, inv));
    out.invoke = list.length === 1 ? list[0]! : list;
  }

  setIfDefined(out, 'on', transitionMapToJSON(machine, config.on, true));
  // Object.entries keeps delay names and numbers as the keys they were
  // written as; numeric delays do sort first (JS integer-key ordering).
  setIfDefined(out, 'after', transitionMapToJSON(machine, config.after, false));
  if (config.always !== undefined) out.always = transitionsToJSON(machine, config.always);
  if (config.onDone !== undefined) out.onDone = transitionsToJSON(machine, config.onDone);
  if (isRecord(config.route)) out.route = transitionToJSON(machine, config.route);
  if (node.type === 'final' || !node.parent) setIfDefined(out, 'output', toPlain(config.output, 'omit'));

  const children = Object.values(node.states) as AnyStateNode[];
  if (children.length > 0) {
    const states: JSONObject = {};
    for (const child of children) states[child.key] = stateNodeToJSON(child);
    out.states = states;
  }
  return out;
}

/**
 * The machine as a `createMachine` config in plain JSON: authored transition
 * shapes (`after` keys, invoke `onDone`/`onError`, `always`) are kept, targets
 * stay as written, and implementations are reduced to their names.
 */
export function machineToJSON(machine: AnyStateMachine): JSONObject {
  return stateNodeToJSON(machine.root);
}

// ---------------------------------------------------------------------------
// Machine -> Mermaid stateDiagram-v2
// ---------------------------------------------------------------------------

// Mermaid's state lexer treats these words as keywords (case-insensitively);
// `root` is the id of its implicit top-level document. Older releases match
// `default` with no word boundary, so any id starting with it breaks there.
const MERMAID_RESERVED = new Set([
  'state', 'note', 'class', 'classdef', 'style', 'click', 'href', 'scale', 'direction', 'hide', 'statediagram',
  'root', 'root_start', 'root_end',
]);

function mermaidSafeId(raw: string): string {
  let id = raw.replace(/[^A-Za-z0-9_]/g, '_');
  if (id === '' || /^_+$/.test(id)) id = `s${id}`;
  if (MERMAID_RESERVED.has(id.toLowerCase()) || /^default/i.test(id)) id = `s_${id}`;
  return id;
}

const MERMAID_ENTITIES: Record<string, string> = {
  '#': '#35;',
  ':': '#58;',
  ';': '#59;',
  '"': '#quot;',
  '<': '#lt;',
  '>': '#gt;',
};

/**
 * Mermaid releases before 2026 end a transition label at `:` or `;` (so
 * `done: fetcher` fails to parse there), `<...>` is sanitised as HTML and
 * `#...;` is read as an entity. Writing these characters as entity codes
 * parses everywhere and renders as the original text.
 */
function mermaidText(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/[#:;"<>]/g, (c) => MERMAID_ENTITIES[c] ?? c);
}

interface Edge {
  source: AnyStateNode;
  target: AnyStateNode;
  label: string;
}

type Scope = AnyStateNode | 'top';

function allNodes(root: AnyStateNode): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const walk = (node: AnyStateNode): void => {
    out.push(node);
    for (const child of Object.values(node.states) as AnyStateNode[]) walk(child);
  };
  walk(root);
  return out;
}

function isProperAncestor(ancestor: AnyStateNode, node: AnyStateNode): boolean {
  for (let p = node.parent; p; p = p.parent) if (p === ancestor) return true;
  return false;
}

function hasChildren(node: AnyStateNode): boolean {
  return Object.keys(node.states).length > 0;
}

/** Short event label: invoke completion events are named after their actor. */
function eventLabel(node: AnyStateNode, descriptor: string, srcByInvokeId: Map<string, string>): string {
  const m = /^xstate\.(done\.actor|error\.actor|snapshot)\.(.+)$/.exec(descriptor);
  if (m) {
    const kind = m[1] === 'done.actor' ? 'done' : m[1] === 'error.actor' ? 'error' : 'snapshot';
    return `${kind}: ${srcByInvokeId.get(m[2]!) ?? m[2]!}`;
  }
  if (descriptor === `xstate.done.state.${node.id}`) return 'onDone';
  return descriptor;
}

function collectEdges(machine: AnyStateMachine, nodes: AnyStateNode[]): Edge[] {
  const srcByInvokeId = new Map<string, string>();
  for (const node of nodes) {
    // `node.invoke` is built 1:1 from the configured invokes, in order.
    const configured = toArray((node.config as Record<string, unknown>).invoke as unknown);
    node.invoke.forEach((inv, i) => {
      const config = configured[i];
      const src = isRecord(config) ? config.src : undefined;
      const explicitId = isRecord(config) && typeof config.id === 'string';
      srcByInvokeId.set(inv.id, actorName(machine, src) ?? (explicitId ? inv.id : INLINE));
    });
  }

  const edges: Edge[] = [];
  for (const node of nodes) {
    const push = (label: string, t: { target?: readonly AnyStateNode[] | undefined; guard?: unknown }): void => {
      const text = t.guard === undefined ? label : `${label} [${guardLabel(t.guard)}]`;
      // A targetless transition handles the event without leaving the state.
      const targets = t.target && t.target.length > 0 ? t.target : [node];
      for (const target of targets) edges.push({ source: node, target, label: text });
    };
    for (const [descriptor, transitions] of node.transitions) {
      // Route transitions are synthesised on the root for `route` configs
      // (reachable from anywhere); drawing them would wire the root to them.
      if (descriptor === 'xstate.route') continue;
      for (const t of transitions) {
        const delay = (t as { delay?: unknown }).delay;
        push(delay !== undefined ? `after ${String(delay)}` : eventLabel(node, descriptor, srcByInvokeId), t);
      }
    }
    for (const t of node.always ?? []) push('always', t);
  }
  return edges;
}

/**
 * Where a transition line goes: the innermost block holding both ends. The
 * root counts as a block only when the machine is drawn as a composite.
 */
function edgeScope(edge: Edge, wrapped: boolean): Scope {
  let scope: AnyStateNode | undefined = edge.source.parent;
  while (scope && !isProperAncestor(scope, edge.target)) scope = scope.parent;
  // Lines between concurrent regions cannot sit inside a `--` section.
  while (scope && scope.type === 'parallel') scope = scope.parent;
  return scopeOf(scope, wrapped);
}

function scopeOf(node: AnyStateNode | undefined, wrapped: boolean): Scope {
  if (!node || (!node.parent && !wrapped)) return 'top';
  return node;
}

function assignMermaidIds(nodes: AnyStateNode[], rootId: string | undefined): Map<AnyStateNode, string> {
  const ids = new Map<AnyStateNode, string>();
  const used = new Set<string>();
  const claim = (node: AnyStateNode, preferred: string): void => {
    let id = preferred;
    for (let i = 2; used.has(id); i++) id = `${preferred}_${i}`;
    used.add(id);
    ids.set(node, id);
  };
  if (rootId !== undefined) claim(nodes[0]!, rootId);

  // A state is named by its key when that is unique in the machine, else by
  // as many trailing path segments as it takes (`upload_pending`).
  const children = nodes.filter((n) => n.parent);
  const suffix = (n: AnyStateNode, depth: number): string => mermaidSafeId(n.path.slice(-depth).join('_'));
  const counts = new Map<number, Map<string, number>>();
  const countAt = (depth: number): Map<string, number> => {
    let c = counts.get(depth);
    if (!c) {
      c = new Map();
      for (const n of children) c.set(suffix(n, depth), (c.get(suffix(n, depth)) ?? 0) + 1);
      counts.set(depth, c);
    }
    return c;
  };
  for (const n of children) {
    let depth = 1;
    while (depth < n.path.length && countAt(depth).get(suffix(n, depth))! > 1) depth++;
    claim(n, suffix(n, depth));
  }
  // Mermaid names each composite's `[*]` pseudo-states `<id>_start`/`<id>_end`.
  const pseudo = new Set<string>();
  for (const [node, id] of ids) if (hasChildren(node)) pseudo.add(`${id}_start`).add(`${id}_end`);
  for (const [node, id] of ids) {
    if (!pseudo.has(id)) continue;
    used.delete(id);
    let next = `${id}_`;
    while (used.has(next) || pseudo.has(next)) next += '_';
    used.add(next);
    ids.set(node, next);
  }
  return ids;
}

/**
 * Mermaid `stateDiagram-v2` text. States and transitions follow definition
 * order. Each transition line is placed in the innermost composite block that
 * contains both of its ends, so Mermaid nests every state where it belongs.
 * The machine itself only becomes an outer composite when some transition
 * starts or ends on the root (e.g. a machine-wide `on`), since such a line
 * needs a node to attach to.
 */
export function machineToMermaid(machine: AnyStateMachine): string {
  const nodes = allNodes(machine.root);
  const provisional = collectEdges(machine, nodes);
  const wrapped = provisional.some((e) => !e.source.parent || !e.target.parent);
  const ids = assignMermaidIds(nodes, wrapped ? mermaidSafeId(machine.id) : undefined);
  const idOf = (n: AnyStateNode): string => ids.get(n)!;

  const edgesByScope = new Map<Scope, Edge[]>();
  for (const edge of provisional) {
    const scope = edgeScope(edge, wrapped);
    let list = edgesByScope.get(scope);
    if (!list) edgesByScope.set(scope, (list = []));
    list.push(edge);
  }

  const edgeLines = (scope: Scope): string[] =>
    (edgesByScope.get(scope) ?? []).map((e) => `${idOf(e.source)} --> ${idOf(e.target)} : ${mermaidText(e.label)}`);

  const label = (node: AnyStateNode): string | undefined => {
    const text = node.type === 'history' ? `${node.key} [H${node.history === 'deep' ? '*' : ''}]` : node.key;
    return text === idOf(node) ? undefined : text;
  };

  const declare = (node: AnyStateNode, indent: string): string[] => {
    const l = label(node);
    const head = l === undefined ? idOf(node) : `state "${mermaidText(l)}" as ${idOf(node)}`;
    if (!hasChildren(node)) return [indent + head];
    const open = l === undefined ? `state ${idOf(node)} {` : `${head} {`;
    return [indent + open, ...body(node, `${indent}  `), `${indent}}`];
  };

  function body(node: AnyStateNode, indent: string): string[] {
    const lines: string[] = [];
    const children = Object.values(node.states) as AnyStateNode[];
    if (node.type === 'parallel') {
      children.forEach((child, i) => {
        if (i > 0) lines.push(`${indent}--`);
        lines.push(...declare(child, indent));
      });
      return lines;
    }
    for (const target of node.initial.target as AnyStateNode[]) lines.push(`${indent}[*] --> ${idOf(target)}`);
    for (const child of children) lines.push(...declare(child, indent));
    lines.push(...edgeLines(scopeOf(node, wrapped)).map((l) => indent + l));
    for (const child of children) if (child.type === 'final') lines.push(`${indent}${idOf(child)} --> [*]`);
    return lines;
  }

  const lines = ['stateDiagram-v2'];
  if (wrapped) {
    lines.push(`  [*] --> ${idOf(machine.root)}`);
    lines.push(...declare(machine.root, '  '));
    lines.push(...edgeLines('top').map((l) => `  ${l}`));
  } else {
    lines.push(...body(machine.root, '  '));
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------
// Many machines
// ---------------------------------------------------------------------------

/** One diagram per machine, in the order given, e.g. for README code blocks. */
export function mermaidBlocks(machines: Record<string, AnyStateMachine>): MermaidBlock[] {
  return Object.entries(machines).map(([name, machine]) => ({ name, diagram: machineToMermaid(machine) }));
}

/**
 * `json`: one pretty object keyed by machine name. `mermaid`: each diagram
 * under a `%% <name>` comment line, separated by blank lines.
 */
export function exportMachines(machines: Record<string, AnyStateMachine>, format: MachineExportFormat): string {
  if (format === 'json') {
    const out: JSONObject = {};
    for (const [name, machine] of Object.entries(machines)) out[name] = machineToJSON(machine);
    return JSON.stringify(out, null, 2);
  }
  if (format === 'mermaid') {
    return mermaidBlocks(machines)
      .map(({ name, diagram }) => `%% ${name.replace(/[\r\n]+/g, ' ')}\n${diagram}`)
      .join('\n\n');
  }
  throw new Error(`Unknown machine export format '${String(format)}' (expected 'json' or 'mermaid')`);
}
