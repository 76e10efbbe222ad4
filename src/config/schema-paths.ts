/**
 * Reading the schema itself: which keys a section has, which schema sits at a path, every
 * leaf with its type and form. Env names, env coercion and error messages are derived from
 * it, so they follow the schema without a second list.
 */
import type { z } from 'zod';
import { ConfigSchema, formOf } from './schema.js';

export type Path = readonly (string | number)[];

interface DefView {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
}

const defOf = (schema: z.ZodType): DefView => schema._zod.def as unknown as DefView;

const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly']);

/** Strips default/optional/pipe wrappers down to the schema that holds the checks. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = defOf(current);
    const next = def.type === 'pipe' ? def.in : WRAPPERS.has(def.type) ? def.innerType : undefined;
    if (next === undefined) return current;
    current = next;
  }
}

export function schemaAt(path: Path): z.ZodType | undefined {
  let current: z.ZodType | undefined = ConfigSchema;
  for (const segment of path) {
    if (current === undefined) return undefined;
    const def = defOf(unwrap(current));
    if (def.type === 'object' && typeof segment === 'string') {
      current = def.shape !== undefined && Object.hasOwn(def.shape, segment) ? def.shape[segment] : undefined;
    } else if (def.type === 'array' && typeof segment === 'number') {
      current = def.element;
    } else {
      return undefined;
    }
  }
  return current === undefined ? undefined : unwrap(current);
}

export function keysAt(path: Path): string[] {
  const schema = schemaAt(path);
  const def = schema === undefined ? undefined : defOf(schema);
  return def?.type === 'object' && def.shape !== undefined ? Object.keys(def.shape) : [];
}

export interface Leaf {
  path: string[];
  type: string;
  form: string;
}

function collectLeaves(schema: z.ZodType, path: string[], out: Leaf[]): Leaf[] {
  const inner = unwrap(schema);
  const def = defOf(inner);
  if (def.type === 'object' && def.shape !== undefined) {
    for (const [key, child] of Object.entries(def.shape)) collectLeaves(child, [...path, key], out);
  } else {
    out.push({ path, type: def.type, form: formOf(inner) ?? 'a valid value' });
  }
  return out;
}

export const LEAVES: readonly Leaf[] = collectLeaves(ConfigSchema, [], []);

export function formatPath(path: Path): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out === '' ? '(root)' : out;
}
