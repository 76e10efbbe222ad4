// The CLI reference (docs/cli.md), generated from yargs' own --help output so it cannot
// drift: `node scripts/cli-docs.mjs --write` rewrites it; test/docs.test.ts compares.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/src/main.js', import.meta.url));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));

function help(path) {
  return execFileSync(process.execPath, [cli, ...path, '--help'], { env: { ...env, COLUMNS: '100' }, encoding: 'utf8' }).trimEnd();
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

export function cliReference() {
  const parts = ['# naq CLI reference', '', 'Generated from `naq --help` by `scripts/cli-docs.mjs`; a test keeps it in step.', ''];
  const visit = (path) => {
    const text = help(path);
    parts.push(`## ${['naq', ...path].join(' ')}`, '', '```', text, '```', '');
    for (const sub of subcommands(text, path)) visit([...path, sub]);
  };
  visit([]);
  return `${parts.join('\n')}`;
}

if (process.argv.includes('--write')) {
  writeFileSync(new URL('../docs/cli.md', import.meta.url), cliReference());
  console.log('docs/cli.md written');
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const current = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');
  process.exit(current === cliReference() ? 0 : 1);
}
