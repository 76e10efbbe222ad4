// Rewrites the README's mermaid blocks from `naq machines` (run after `npm run build`).
// test/readme.test.ts fails when they drift, so run this whenever a machine changes.
import { readFileSync, writeFileSync } from 'node:fs';
import { mermaidBlocks } from '../dist/src/inspect/machine-export.js';
import { MACHINES } from '../dist/src/machines/index.js';

const TITLES = {
  supervisor: 'Supervisor — starts children in order, restarts failures with backoff, drains in reverse',
  connection: 'Connection — the reconnection machine',
  service: 'Service — the lifecycle shared by streams, kv and jobs',
  worker: 'Worker — one per queue consumed: pause on disconnect or by an operator, heartbeats, drain',
  scheduler: 'Scheduler — standby until this process leads, then fires due schedules',
  leader: 'Leader — election on a KV key with a TTL and revision-checked renewals',
};
const start = '<!-- diagrams:start -->';
const end = '<!-- diagrams:end -->';
const readme = readFileSync('README.md', 'utf8');
const body = mermaidBlocks(MACHINES)
  .map((b) => `### ${TITLES[b.name] ?? b.name}\n\n\`\`\`mermaid\n${b.diagram.trim()}\n\`\`\`\n`)
  .join('\n');
const i = readme.indexOf(start);
const j = readme.indexOf(end);
if (i < 0 || j < 0) throw new Error(`README.md needs ${start} and ${end} markers`);
writeFileSync('README.md', `${readme.slice(0, i + start.length)}\n\n${body}\n${readme.slice(j)}`);
console.log('README diagrams updated');
