/**
 * Plain-object helpers for layering config: merge, set and get by path. Keys are defined,
 * never assigned, so a parsed "__proto__" stays an ordinary (unknown, reported) key.
 */

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// defineProperty, not assignment: a "__proto__" key from a parsed file must stay an own
// (and therefore unknown, reported) key instead of replacing the object's prototype.
export function defineKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    if (isPlainObject(value)) {
      const current = Object.hasOwn(target, key) ? target[key] : undefined;
      const next = isPlainObject(current) ? current : {};
      mergeInto(next, value);
      defineKey(target, key, next);
    } else {
      defineKey(target, key, Array.isArray(value) ? [...(value as unknown[])] : value);
    }
  }
}

export function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
    if (isPlainObject(next)) {
      node = next;
    } else {
      const created: Record<string, unknown> = {};
      defineKey(node, segment, created);
      node = created;
    }
  }
  const last = path[path.length - 1];
  if (last !== undefined) defineKey(node, last, value);
}

export function getPath(value: unknown, path: readonly (string | number)[]): unknown {
  let node = value;
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined;
    if (!Object.hasOwn(node, segment)) return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}
