// The CLI reference (docs/cli.md), generated from yargs' own --help output so it cannot
// drift: `node scripts/cli-docs.mjs --write` rewrites it; test/docs.test.ts compares.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** `--help` processes at once: each is a node start, ~0.8 s here, and ~45 of them in turn took 38 s. */
const AT_ONCE = 4;

const cli = fileURLToPath(new URL('../dist/src/main.js', import.meta.url));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));

let running = 0;
const queued = [];

async function help(path) {
  if (running >= AT_ONCE) await new Promise((resolve) => queued.push(resolve));
  running++;
  try {
    const { stdout } = await run(process.execPath, [cli, ...path, '--help'], { env: { ...env, COLUMNS: '100' }, encoding: 'utf8' });
    return stdout.trimEnd();
  } finally {
    running--;
    queued.shift()?.();
  }
}

/** Subcommands listed under "Commands:" of a help text (their first word after the path). */
function subcommands(text, path) {
  const section = text.split('\n\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
  const prefix = ['naq', ...path].join(' ');
  const names = [];
  for (const line of section.split('\n')) {
    const m = line.trim().match(/^(\S+(?: \S+)*?)\s{2,}/) ?? line.trim().match(/^(\S.*)$/);
    if (!m || !m[1].startsWith(prefix + ' ')) continue;
    const word = m[1].slice(prefix.length + 1).split(' ')[0];
    if (word && !word.startsWith('[') && !word.startsWith('<') && !names.includes(word)) names.push(word);
  }
  return names;
}

/** The reference: every command's help, depth first in the order each help lists them. */
export async function cliReference() {
  const visit = async (path) => {
    const text = await help(path);
    const children = await Promise.all(subcommands(text, path).map((sub) => visit([...path, sub])));
    return [`## ${['naq', ...path].join(' ')}`, '', '```', text, '```', '', ...children.flat()];
  };
  const parts = ['# naq CLI reference', '', 'Generated from `naq --help` by `scripts/cli-docs.mjs`; a test keeps it in step.', '', ...(await visit([]))];
  return `${parts.join('\n')}`;
}

if (process.argv.includes('--write')) {
  writeFileSync(new URL('../docs/cli.md', import.meta.url), await cliReference());
  console.log('docs/cli.md written');
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const current = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');
  process.exit(current === (await cliReference()) ? 0 : 1);
}
