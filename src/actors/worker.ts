import { fromCallback, fromPromise } from 'xstate';
import type { NaqConfig } from '../config.js';
import { errorInfo } from '../errors.js';
import type { Logger } from '../log.js';
import { workerMachine, type ProcessorCommand, type WorkerEvent, type WorkerInput } from '../machines/worker.js';
import { jobsRuntimeFor } from './jobs-runtime.js';
import { natsOf } from './nats-connection.js';
import { QueueWorker, type Handlers } from './queue-worker.js';

/** The global cap on unacknowledged jobs of a queue, across all its workers. */
export function maxAckPending(config: NaqConfig): number {
  return config.worker.maxAckPending;
}

/** The worker machine with a QueueWorker behind it. */
export function workerLogic(config: NaqConfig, handlers: Handlers, log: Logger) {
  return workerMachine.provide({
    actors: {
      setup: fromPromise<void, WorkerInput>(async ({ input }) => {
        const rt = jobsRuntimeFor(natsOf(input.connection), config, log);
        await rt.ensureLayout();
        await rt.ensureConsumer(input.queue, maxAckPending(config));
      }),
      processor: fromCallback<ProcessorCommand, WorkerInput>(({ input, receive, sendBack }) => {
        const rt = jobsRuntimeFor(natsOf(input.connection), config, log);
        const worker = new QueueWorker(
          rt,
          input.queue,
          handlers,
          { concurrency: config.worker.concurrency, ackWaitMs: config.worker.ackWaitMs, activeAfterMs: config.jobs.activeAfterMs },
          log.child({ worker: input.queue }),
        );
        let stopped = false;
        const fail = (error: unknown) => {
          if (!stopped) sendBack({ type: 'PROCESSOR.FAILED', error: errorInfo(error) } satisfies WorkerEvent);
        };
        worker
          .prepare(maxAckPending(config))
          .then(() => {
            if (stopped) return;
            worker.resume(fail);
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
