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

export const INLINE = '(inline)';

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

export function toArray<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

// ---------------------------------------------------------------------------
// Guards, actions, actors
// ---------------------------------------------------------------------------

/**
 * Higher-order guards (`and`, `or`, `not`, `stateIn`) are functions carrying a
 * `check` plus their operands; they are rendered as a readable expression.
 */
export function guardLabel(guard: unknown): string {
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
export function actorName(machine: AnyStateMachine, src: unknown): string | undefined {
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
