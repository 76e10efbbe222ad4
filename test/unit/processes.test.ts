/** The test support's subprocess runner: what a CLI prints just before it exits is not lost. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { exitedWithOutput } from '../support/processes.js';

describe('exitedWithOutput', () => {
  it('resolves with the exit code only once all the child wrote to its pipes was read', async () => {
    // Written just before exiting, as a CLI writes its error line and exits 2.
    const script = "process.stderr.write('e'.repeat(1 << 20)); process.stdout.write('o'.repeat(1 << 20)); process.exitCode = 2;";
    for (let round = 0; round < 10; round++) {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = 0;
      let stderr = 0;
      child.stdout!.on('data', (d: Buffer) => (stdout += d.length));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.length));
      const code = await exitedWithOutput(child);
      expect({ code, stdout, stderr }).toEqual({ code: 2, stdout: 1 << 20, stderr: 1 << 20 });
    }
  });
});
