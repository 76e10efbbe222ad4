#!/usr/bin/env node
// docs/security.md: writes the authorization block from the group tables and the users table
// (`--write`), or says whether it is in step (`--check`, the default). The permissions test holds
// the two to each other; this keeps a maintainer from writing the block by hand.
import { readFileSync, writeFileSync } from 'node:fs';

const FILE = new URL('../docs/security.md', import.meta.url);
const text = readFileSync(FILE, 'utf8');

const groups = new Map();
let current = null;
for (const line of text.split('\n')) {
  const heading = /^### `([a-z]+)` —/.exec(line);
  if (heading) {
    current = { publish: [], subscribe: [] };
    groups.set(heading[1], current);
    continue;
  }
  if (/^## /.test(line)) current = null;
  const row = /^\| (publish|subscribe) \| `([^`]+)` \|/.exec(line);
  if (current && row) current[row[1]].push(row[2]);
}

const users = [];
for (const line of text.split('\n')) {
  const row = /^\| `(naq-[a-z]+)` \| .* \| ((?:`[a-z]+`(?:, )?)+) \| (?:yes|no) \|$/.exec(line);
  if (row) users.push({ user: row[1], groups: [...row[2].matchAll(/`([a-z]+)`/g)].map((m) => m[1]) });
}
if (users.length === 0) throw new Error('no users table found');

const list = (subjects) => subjects.map((s) => `            "${s}"`).join('\n');
const union = (names, kind) => [...new Set(names.flatMap((g) => {
  const group = groups.get(g);
  if (!group) throw new Error(`no table for group ${g}`);
  return group[kind];
}))];
const blocks = users.map(({ user, groups: names }) => {
  const env = `$${user.slice(4).toUpperCase()}_PASSWORD`;
  const sub = union(names, 'subscribe');
  return [
    '    {',
    `      user: "${user}"`,
    `      password: ${env}`,
    '      permissions {',
    '        publish {',
    '          allow: [',
    list(union(names, 'publish')),
    '          ]',
    '        }',
    ...(sub.length ? ['        subscribe {', '          allow: [', list(sub), '          ]', '        }'] : []),
    '      }',
    '    }',
  ].join('\n');
});
const block = ['<!-- permissions:start -->', '```', 'authorization {', '  users = [', ...blocks, '  ]', '}', '```', '<!-- permissions:end -->'].join('\n');
const updated = text.replace(/<!-- permissions:start -->[\s\S]*<!-- permissions:end -->/, block);
if (process.argv.includes('--write')) {
  writeFileSync(FILE, updated);
  console.log(updated === text ? 'docs/security.md: block already in step' : 'docs/security.md: block rewritten');
} else if (updated !== text) {
  console.error('docs/security.md: the authorization block is not what the tables say (run node scripts/security-block.mjs --write)');
  process.exit(1);
} else console.log('docs/security.md: block in step');
