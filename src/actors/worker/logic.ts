import { fromCallback, fromPromise } from 'xstate';
import type { NaqConfig } from '../../config/index.js';
import { errorInfo } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { workerMachine, type ProcessorCommand, type WorkerEvent, type WorkerInput } from '../../machines/worker.js';
import { contextOf } from '../nats/context.js';
import type { Handlers } from './handler.js';
import { QueueWorker } from './queue-worker.js';
import type { JobMetrics } from '../../metrics/metrics.js';

/** The global cap on unacknowledged jobs of a queue, across all its workers. */
export function maxAckPending(config: NaqConfig): number {
  return config.worker.maxAckPending;
}

/** The worker machine (a pure machine) with a QueueWorker on this connection behind it. */
export function workerLogic(config: NaqConfig, handlers: Handlers, log: Logger, metrics?: JobMetrics) {
  return workerMachine.provide({
    actors: {
      setup: fromPromise<void, WorkerInput>(async ({ input }) => {
        const ctx = contextOf(input.connection);
        await ctx.storage.ensureLayout();
        await ctx.storage.ensureConsumer(input.queue, maxAckPending(config));
      }),
      processor: fromCallback<ProcessorCommand, WorkerInput>(({ input, receive, sendBack }) => {
        const worker = new QueueWorker(
          contextOf(input.connection),
          input.queue,
          handlers,
          { concurrency: config.worker.concurrency, ackWaitMs: config.worker.ackWaitMs, activeAfterMs: config.jobs.activeAfterMs, maxLogLines: config.jobs.maxLogLines, ...(metrics ? { metrics } : {}) },
          log.child({ worker: input.queue }),
        );
        let stopped = false;
        const fail = (error: unknown) => {
          if (!stopped) sendBack({ type: 'PROCESSOR.FAILED', error: errorInfo(error) } satisfies WorkerEvent);
        };
        worker
          .prepare(maxAckPending(config))
          .then(() => worker.readPaused())
          .then((paused) => {
            if (stopped) return;
            // Paused by an operator before this worker started: held before it ever pulls.
            if (paused) {
              worker.hold();
              sendBack({ type: 'QUEUE.PAUSED' } satisfies WorkerEvent);
            }
            worker.resume(fail);
            worker.watchPaused((now) => {
              if (!stopped) sendBack({ type: now ? 'QUEUE.PAUSED' : 'QUEUE.RESUMED' } satisfies WorkerEvent);
            });
            worker.heartbeat();
            worker.emitWorker('worker.started');
          })
          .catch(fail);
        receive((command) => {
          switch (command.type) {
            case 'PAUSE':
              worker.pause();
              worker.emitWorker('worker.paused');
              break;
            case 'RESUME':
              worker.resume(fail);
              worker.emitWorker('worker.resumed');
              break;
            case 'HOLD':
              worker.hold();
              worker.heartbeat();
              worker.emitWorker('worker.paused');
              break;
            case 'RELEASE':
              worker.release();
              worker.heartbeat();
              worker.emitWorker('worker.resumed');
              break;
            case 'HEARTBEAT':
              worker.heartbeat();
              break;
            case 'DRAIN':
              void worker
                .drain()
                .then(() => worker.emitWorker('worker.stopped'))
                .then(() => worker.removeHeartbeat())
                .then(() => sendBack({ type: 'PROCESSOR.DRAINED' } satisfies WorkerEvent));
              break;
            case 'NAK_REST':
              worker.nakRest();
              break;
          }
        });
        return () => {
          stopped = true;
          void worker.stop();
        };
      }),
    },
  });
}
