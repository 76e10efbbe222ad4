/**
 * An HTTP API that embeds naq: the web process enqueues jobs and, in the same process, a
 * worker runs them. Shows `createNaq` with typed handlers, `enqueue` + `waitFor` (and how a
 * failed job surfaces as `JobFailedError`), `getJob`, `health()`, and a clean drain on SIGTERM.
 *
 *   POST /resize   {"width":640}  → 200 { id, result }   (waits for the job; 500 if it fails)
 *   POST /enqueue  {"width":640}  → 202 { id }           (fire and forget)
 *   GET  /jobs/:id                → the job record, 404 if none
 *   GET  /health                  → naq.health(); 503 while not healthy
 *
 * Run (after `npm run build`, with a nats-server -js on 4222):
 *   NAQ_NATS_URL=nats://127.0.0.1:4222 PORT=3000 node dist/examples/http-server.js
 *   curl -s -XPOST localhost:3000/resize -d '{"width":640}'
 *
 * Every NAQ_* variable of the README applies (loadConfig reads them); PORT=0 picks a free port.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createNaq, InvalidArgumentError, JobFailedError, loadConfig, OperationTimeoutError } from '../src/index.js';

interface ResizeInput {
  width: number;
}

const handlers = {
  // Pure computation stands in for real work; a thrown Error becomes the job's recorded error.
  resize: async (data: ResizeInput) => {
    if (typeof data.width !== 'number' || !(data.width > 0)) {
      throw new Error(`width must be a positive number, got ${JSON.stringify(data.width)}`);
    }
    return { width: data.width, height: Math.round(data.width * 0.75) };
  },
};

// createNaq never reads the environment itself; loadConfig is what honours NAQ_NATS_URL & co.
const config = loadConfig({ env: process.env, flags: { roles: ['worker'] } });
const naq = createNaq(config, { handlers });

const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
}

async function resizeInput(req: IncomingMessage): Promise<ResizeInput> {
  const body = await readJson(req);
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  // The handler validates the value itself, so a bad width shows how a failed job is reported.
  return { width: (body as { width?: unknown }).width as number };
}

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function route(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;

  if (req.method === 'POST' && path === '/resize') {
    const id = await naq.enqueue('resize', await resizeInput(req));
    try {
      const result = await naq.waitFor(id, { timeoutMs: 30_000 });
      return send(res, 200, { id, result });
    } catch (error) {
      if (error instanceof JobFailedError) {
        return send(res, 500, { id, status: error.status, error: error.error?.message ?? error.message });
      }
      // The job is still queued or running; the client can poll GET /jobs/:id.
      if (error instanceof OperationTimeoutError) return send(res, 504, { id, error: error.message });
      throw error;
    }
  }

  if (req.method === 'POST' && path === '/enqueue') {
    const id = await naq.enqueue('resize', await resizeInput(req));
    return send(res, 202, { id });
  }

  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (req.method === 'GET' && job) {
    const record = await naq.getJob(decodeURIComponent(job[1]!));
    return record ? send(res, 200, record) : send(res, 404, { error: 'no such job' });
  }

  if (req.method === 'GET' && path === '/health') {
    const health = naq.health();
    return send(res, health.healthy ? 200 : 503, health);
  }

  send(res, 404, { error: `no route for ${req.method} ${path}` });
}

const server = createServer((req, res) => {
  route(req, res).catch((error: unknown) => {
    if (error instanceof HttpError) return send(res, error.status, { error: error.message });
    // naq refuses bad input (an invalid job id, an oversized payload) with this error type.
    if (error instanceof InvalidArgumentError) return send(res, 400, { error: error.message });
    naq.logger.error({ err: error }, 'request failed');
    if (!res.headersSent) send(res, 500, { error: error instanceof Error ? error.message : String(error) });
    else res.destroy();
  });
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  naq.logger.info(`${signal}: closing the HTTP server, then draining naq`);
  // Stop accepting first so no new job arrives while the worker drains; requests already
  // waiting on a job may still get their answer.
  server.close();
  server.closeIdleConnections();
  const output = await naq.stop();
  server.closeAllConnections();
  process.exit(output?.status === 'failed' ? 1 : 0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

async function main() {
  try {
    // Listen only once naq is running, so the first request can already enqueue.
    await naq.start();
  } catch (error) {
    // A signal during start rejects start(); shutdown() owns the exit then.
    if (stopping) return;
    naq.logger.error({ err: error }, 'naq could not start');
    process.exit(1);
  }
  // The supervisor can still fail for good later (e.g. it gave up reconnecting): exit then.
  void naq.done.then((output) => {
    if (!stopping && output.status === 'failed') {
      naq.logger.error({ failure: output.failure }, 'naq failed');
      process.exit(1);
    }
  });
  server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    console.log(`listening on http://127.0.0.1:${port}`);
  });
}

void main();
