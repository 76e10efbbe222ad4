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

/**
 * Why JSON cannot carry `value` faithfully, naming where (`root` is the name of the whole
 * value, e.g. "data" or "result"), or null when it can. Never throws.
 */
export function jsonProblem(value: unknown, root: string): string | null {
  if (value === undefined) return null;
  const ancestors = new Set<object>();
  const walk = (v: unknown, path: string, depth: number, inArray: boolean): string | null => {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return null;
      case 'number':
        return Number.isFinite(v) ? null : `${path} is ${String(v)} (JSON would carry it as null)`;
      case 'bigint':
        return `${path} is a BigInt (JSON has none; send it as a string)`;
      case 'symbol':
        return `${path} is a symbol`;
      case 'function':
        return `${path} is a function (a job can never carry code)`;
      case 'undefined':
        return inArray ? `${path} is undefined in an array (JSON would carry it as null)` : null;
    }
    if (v === null) return null;
    const o = v as object;
    if (depth > MAX_JSON_DEPTH) return `${path} is nested more than ${MAX_JSON_DEPTH} levels deep`;
    if (ancestors.has(o)) return `${path} is a circular reference`;
    let toJSON: unknown;
    try {
      toJSON = (o as { toJSON?: unknown }).toJSON;
    } catch (error) {
      return `reading ${path}.toJSON threw: ${messageOf(error)}`;
    }
    if (typeof toJSON === 'function') {
      let converted: unknown;
      try {
        converted = (toJSON as (k: string) => unknown).call(o, '');
      } catch (error) {
        return `${path}.toJSON() threw: ${messageOf(error)}`;
      }
      if (converted === o) return null;
      ancestors.add(o);
      const problem = walk(converted, path, depth + 1, inArray);
      ancestors.delete(o);
      return problem;
    }
    const lossy = lossyKind(o);
    if (lossy) return `${path} is ${lossy}`;
    ancestors.add(o);
    try {
      if (Array.isArray(o)) {
        for (let i = 0; i < o.length; i++) {
          const problem = walk(o[i], `${path}[${i}]`, depth + 1, true);
          if (problem) return problem;
        }
        return null;
      }
      for (const k of Object.keys(o)) {
        let child: unknown;
        try {
          child = (o as Record<string, unknown>)[k];
        } catch (error) {
          return `reading ${key(path, k)} threw: ${messageOf(error)}`;
        }
        const problem = walk(child, key(path, k), depth + 1, false);
        if (problem) return problem;
      }
      return null;
    } catch (error) {
      // A Proxy whose traps throw.
      return `${path} could not be read: ${messageOf(error)}`;
    } finally {
      ancestors.delete(o);
    }
  };
  try {
    return walk(value, root, 0, false);
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
