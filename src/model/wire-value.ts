/**
 * What JSON can carry faithfully. Job data, results and progress travel as JSON, and
 * `JSON.stringify` changes many values without a word: a Map or a Set becomes `{}`, NaN
 * becomes null, a function disappears, a BigInt or a cycle throws. naq refuses such values
 * where they enter (enqueue, a handler's return, ctx.progress) and names the path, rather
 * than store something other than what the user gave.
 *
 * The documented conversions, which JSON itself makes and which keep the meaning:
 * - an object with a `toJSON()` method is carried as what it returns (a Date as its ISO string);
 * - a property whose value is `undefined` is left out; `undefined` at the top is `null`;
 * - a class instance is carried as its own enumerable properties; symbol keys are left out.
 */

/** Deeper than this, JSON.stringify itself may overflow the stack. */
export const MAX_JSON_DEPTH = 512;

const LOSSY: ReadonlyArray<[abstract new (...args: never[]) => unknown, string]> = [
  [Map, 'a Map (JSON would carry it as {}; convert it, e.g. Object.fromEntries(map))'],
  [Set, 'a Set (JSON would carry it as {}; convert it, e.g. [...set])'],
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [RegExp, 'a RegExp (JSON would carry it as {}; send its source as a string)'],
  [Promise, 'a Promise (await it first)'],
  [ArrayBuffer, 'an ArrayBuffer (JSON would carry it as {}; send base64 or an array)'],
  [DataView, 'a DataView'],
  [Error, 'an Error (JSON would carry it as {}; send its message)'],
];

function lossyKind(value: object): string | null {
  if (ArrayBuffer.isView(value)) return 'a typed array (JSON would carry it as an object of indices; send an array or base64)';
  for (const [type, kind] of LOSSY) if (value instanceof type) return kind;
  return null;
}

function key(path: string, k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
}

/** The path of the value being looked at, written out only when it has a problem to name. */
function pathOf(root: string, keys: ReadonlyArray<string | number>): string {
  let path = root;
  for (const k of keys) path = typeof k === 'number' ? `${path}[${k}]` : key(path, k);
  return path;
}

/** A plain object or array: not one of the lossy kinds, whatever its contents. */
function plain(o: object): boolean {
  const proto = Object.getPrototypeOf(o);
  return proto === Object.prototype || proto === Array.prototype || proto === null;
}

/**
 * True for what most job data is, a plain object of strings, finite numbers, booleans and
 * nulls, checked without allocating; false for anything else (not necessarily a problem:
 * the full walk decides).
 */
function flatAndFine(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return false;
  try {
    const record = value as Record<string, unknown>;
    for (const k in record) {
      const v = record[k];
      const t = typeof v;
      if (t === 'string' || t === 'boolean' || t === 'undefined' || v === null) continue;
      if (t === 'number' && Number.isFinite(v)) continue;
      return false;
    }
    return true;
  } catch {
    // A getter that throws: the full walk names it.
    return false;
  }
}

/**
 * Why JSON cannot carry `value` faithfully, naming where (`root` is the name of the whole
 * value, e.g. "data" or "result"), or null when it can. Never throws. Every job's data goes
 * through it at enqueue: the path is kept as a stack of keys and written out only for a
 * problem, and plain objects skip the lossy-kind checks (measured: ~0.5 µs of a small job's
 * ~2.9 µs build, mostly path strings and `instanceof` checks).
 */
export function jsonProblem(value: unknown, root: string): string | null {
  if (value === undefined) return null;
  if (flatAndFine(value)) return null;
  // Objects on the way down from the root (a cycle comes back to one) and the keys taken.
  const ancestors: object[] = [];
  const keys: Array<string | number> = [];
  const at = () => pathOf(root, keys);
  const walk = (v: unknown, depth: number, inArray: boolean): string | null => {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return null;
      case 'number':
        return Number.isFinite(v) ? null : `${at()} is ${String(v)} (JSON would carry it as null)`;
      case 'bigint':
        return `${at()} is a BigInt (JSON has none; send it as a string)`;
      case 'symbol':
        return `${at()} is a symbol`;
      case 'function':
        return `${at()} is a function (a job can never carry code)`;
      case 'undefined':
        return inArray ? `${at()} is undefined in an array (JSON would carry it as null)` : null;
    }
    if (v === null) return null;
    const o = v as object;
    if (depth > MAX_JSON_DEPTH) return `${at()} is nested more than ${MAX_JSON_DEPTH} levels deep`;
    if (ancestors.includes(o)) return `${at()} is a circular reference`;
    let toJSON: unknown;
    try {
      toJSON = (o as { toJSON?: unknown }).toJSON;
    } catch (error) {
      return `reading ${at()}.toJSON threw: ${messageOf(error)}`;
    }
    if (typeof toJSON === 'function') {
      let converted: unknown;
      try {
        converted = (toJSON as (k: string) => unknown).call(o, '');
      } catch (error) {
        return `${at()}.toJSON() threw: ${messageOf(error)}`;
      }
      if (converted === o) return null;
      ancestors.push(o);
      const problem = walk(converted, depth + 1, inArray);
      ancestors.pop();
      return problem;
    }
    const lossy = plain(o) ? null : lossyKind(o);
    if (lossy) return `${at()} is ${lossy}`;
    ancestors.push(o);
    const level = keys.length;
    try {
      if (Array.isArray(o)) {
        for (let i = 0; i < o.length; i++) {
          keys.push(i);
          const problem = walk(o[i], depth + 1, true);
          if (problem) return problem;
          keys.pop();
        }
        return null;
      }
      for (const k of Object.keys(o)) {
        keys.push(k);
        let child: unknown;
        try {
          child = (o as Record<string, unknown>)[k];
        } catch (error) {
          return `reading ${at()} threw: ${messageOf(error)}`;
        }
        const problem = walk(child, depth + 1, false);
        if (problem) return problem;
        keys.pop();
      }
      return null;
    } catch (error) {
      // A Proxy whose traps throw: named by this value's own path.
      keys.length = level;
      return `${at()} could not be read: ${messageOf(error)}`;
    } finally {
      ancestors.pop();
    }
  };
  try {
    return walk(value, 0, false);
  } catch (error) {
    return `${root} could not be read: ${messageOf(error)}`;
  }
}

function messageOf(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return 'an unreadable error';
  }
}
