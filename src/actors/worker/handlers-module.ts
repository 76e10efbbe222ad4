import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Handlers } from './handler.js';
import { ConfigError } from '../../core/errors.js';
import { checkMiddleware, withMiddleware, type Middleware } from './middleware.js';

/** A handlers module, read: its file, its handlers by name and its `middleware` export. */
export interface HandlersModule {
  /** The module's absolute path. */
  path: string;
  handlers: Handlers;
  middleware: Middleware[];
}

/**
 * Loads the handlers a worker may run from a module: every exported function is a handler
 * named by its export (a default export that is an object of functions counts too). Only
 * these can ever run — a job names a handler, it never carries code. The export `middleware`
 * (a function, or an array of them) is not a handler: it runs around every handler of the
 * module (middleware.ts). TypeScript modules are loaded through tsx, so `--handlers jobs.ts`
 * works without a build step.
 */
export async function loadHandlers(file: string): Promise<Handlers> {
  const { handlers, middleware } = await readHandlersModule(file);
  return middleware.length ? withMiddleware(handlers, middleware) : handlers;
}

/**
 * The module imported and its exports sorted (loadHandlers; the sandbox's threads import it
 * the same way, sandbox-thread.ts).
 */
export async function readHandlersModule(file: string): Promise<HandlersModule> {
  const path = resolve(file);
  if (!existsSync(path)) throw new ConfigError('--handlers', `no such file: ${path}`);
  const url = pathToFileURL(path).href;
  let mod: Record<string, unknown>;
  if (['.ts', '.mts', '.cts', '.tsx'].includes(extname(path))) {
    const { tsImport } = await import('tsx/esm/api');
    mod = (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  } else {
    mod = (await import(url)) as Record<string, unknown>;
  }
  const handlers: Handlers = {};
  let middleware: Middleware[] = [];
  const collect = (source: Record<string, unknown>) => {
    for (const [name, value] of Object.entries(source)) {
      if (name === 'middleware') {
        const list = Array.isArray(value) ? value : [value];
        try {
          middleware = list.map((m, i) => checkMiddleware(m, `${path}: middleware${Array.isArray(value) ? `[${i}]` : ''}`));
        } catch (error) {
          throw new ConfigError('--handlers', (error as Error).message);
        }
      } else if (typeof value === 'function' && name !== 'default') handlers[name] = value as Handlers[string];
    }
  };
  if (mod.default && typeof mod.default === 'object') collect(mod.default as Record<string, unknown>);
  collect(mod);
  if (Object.keys(handlers).length === 0) {
    throw new ConfigError('--handlers', `${path} exports no functions; export each handler by its job name`);
  }
  return { path, handlers, middleware };
}
