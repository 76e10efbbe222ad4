/** V8 settings for the processes the naq command owns (`naq supervisor | worker | scheduler`). */
import { setFlagsFromString } from 'node:v8';

/**
 * V8 pretenures an allocation site (allocates what it makes straight into the old generation)
 * once nearly all of its objects survived young-generation collections. A worker's warm-up,
 * while its code is slow and what it buffers waits longer, can make a per-job site look
 * long-lived; pretenured, it leaves ~280 bytes of garbage a job in the old generation, which
 * only a full collection reclaims. That was the worker whose RSS peaked at 115–121 MiB in
 * about 1 of 14 drains of 100,000 jobs, its old generation at 47 MB against ~17
 * (`--trace-pretenuring-statistics`: a site made about twice a job was tenured in such a
 * drain, in none of 8 others). With it off, none of 20 drains did, at the same CPU per job.
 * V8 reads the flag at each collection, so the run commands set it in the process naq owns,
 * as they install the rejection handler; the bench's worker process calls it too.
 */
export function keepOldGenerationFlat() {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
