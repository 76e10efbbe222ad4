import { spawn } from 'node:child_process';
import { CLI } from './paths.js';
import { exitedWithOutput } from './processes.js';

/** The top-level commands the built CLI's --help lists (so docs are checked against yargs itself). */
export function buildCliForDocs(): Promise<string[]> {
  const cli = CLI;
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [cli, '--help'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', rej);
    void exitedWithOutput(child).then(() => res([...out.matchAll(/^\s+naq (\w+)/gm)].map((m) => m[1]!)));
  });
}
