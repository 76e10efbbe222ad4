/**
 * One process that is both a worker and a scheduler: it creates a recurring schedule and a
 * delayed job, takes part in the leader election, and runs the jobs the leader fires. Shows
 * `schedule(id, { every }, ...)`, `enqueueIn`, and following leadership through the actor
 * system (`naq.get('leader')` is the election machine; it emits LEADER_ELECTED / LEADER_LOST).
 *
 * Output on stdout, one line each:
 *   leader                        this process became the scheduler leader
 *   delayed <jobId>               the enqueueIn job was stored (runs ~1.5 s later)
 *   tick <jobId> <iso time>       the `tick` handler ran (schedule runs are `every-second-<ms>`)
 *
 * Run (after `npm run build`, with a nats-server -js on 4222):
 *   NAQ_NATS_URL=nats://127.0.0.1:4222 node dist/examples/worker-and-scheduler.js
 * Start it twice to watch one process lead and the other stand by; SIGTERM the leader and the
 * other takes over within `scheduler.leaderTtlMs`.
 */
import type { AnyActorRef } from 'xstate';
import { createNaq, loadConfig, type JobContext, type LeaderNotification } from '../src/index.js';

const handlers = {
  tick: (_data: { from: string }, ctx: JobContext) => {
    console.log(`tick ${ctx.jobId} ${new Date().toISOString()}`);
  },
};

// createNaq never reads the environment itself; loadConfig is what honours NAQ_NATS_URL & co.
const config = loadConfig({ env: process.env, flags: { roles: ['worker', 'scheduler'] } });
const naq = createNaq(config, { handlers });

/**
 * The leader actor only exists while the scheduler service is active, and a restarted
 * scheduler brings a new one; so re-attach whenever the supervisor's snapshot changes (it
 * does on every service start or restart) rather than subscribing once.
 */
function followLeadership() {
  let followed: AnyActorRef | undefined;
  const attach = () => {
    const leader = naq.get('leader');
    if (!leader || leader === followed) return;
    followed = leader;
    // The election may already be won by the time we look: the snapshot says so, the event
    // would not come again.
    const state = leader.getSnapshot().value;
    if (state === 'leader' || state === 'renewing') console.log('leader');
    leader.on('LEADER_ELECTED', () => console.log('leader'));
    leader.on('LEADER_LOST', (e: LeaderNotification) => console.log(`not leader (${'reason' in e ? e.reason : 'lost'})`));
  };
  naq.actor?.subscribe(attach);
  attach();
}

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  naq.logger.info(`${signal}: stepping down and draining`);
  const output = await naq.stop();
  process.exit(output?.status === 'failed' ? 1 : 0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

async function main() {
  try {
    await naq.start();
  } catch (error) {
    if (stopping) return;
    naq.logger.error({ err: error }, 'naq could not start');
    process.exit(1);
  }
  followLeadership();
  void naq.done.then((output) => {
    if (!stopping && output.status === 'failed') {
      naq.logger.error({ failure: output.failure }, 'naq failed');
      process.exit(1);
    }
  });

  // Creating a schedule that exists replaces it, so restarting this process is harmless.
  await naq.schedule('every-second', { every: 1000 }, 'tick', { from: 'schedule' });
  const id = await naq.enqueueIn(1500, 'tick', { from: 'enqueueIn' });
  console.log(`delayed ${id}`);
}

main().catch((error: unknown) => {
  // A signal while the schedule is being written makes it fail; shutdown() owns the exit then.
  if (stopping) return;
  naq.logger.error({ err: error }, 'example failed');
  void naq.stop().finally(() => process.exit(1));
});
