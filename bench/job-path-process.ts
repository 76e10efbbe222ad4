/** The job path's rounds (bench/job-path.ts) in a fresh process, set up as `naq worker` sets its own. */
import { keepOldGenerationFlat } from '../src/cli/process-settings.js';
import { runJobPath, type JobPathSettings } from './job-path.js';
import { childConfig, exitSoon } from './util.js';

keepOldGenerationFlat();

try {
  const result = await runJobPath(childConfig<JobPathSettings>());
  process.send?.({ result });
  await exitSoon(0);
} catch (error) {
  process.send?.({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
