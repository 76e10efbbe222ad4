import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mermaidBlocks } from '../../src/inspect/machine-export.js';
import { MACHINES } from '../../src/machines/index.js';
import { buildCliForDocs } from '../support/cli-docs.js';
import { ROOT } from '../support/paths.js';

const root = ROOT;

describe('README', () => {
  it('shows exactly the diagrams `naq machines --format mermaid` prints', async () => {
    const readme = await readFile(resolve(root, 'README.md'), 'utf8');
    const shown = [...readme.matchAll(/```mermaid\n([\s\S]*?)\n```/g)].map((m) => m[1]);
    const printed = mermaidBlocks(MACHINES).map((b) => b.diagram.trim());
    expect(shown).toEqual(printed);
  });

  it('quick start commands are package scripts, and the CLI table covers every command', async () => {
    const readme = await readFile(resolve(root, 'README.md'), 'utf8');
    const pkg = JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8'));
    expect(readme).toContain('npm start');
    expect(readme).toContain('npm test');
    expect(pkg.scripts.start).toBe('node --max-semi-space-size=8 dist/src/main.js supervisor --config examples/start.yaml --dashboard');
    expect(pkg.scripts.test).toMatch(/tsc .*&& vitest run/);
    for (const command of await buildCliForDocs()) expect(readme).toContain(`naq ${command}`);
  });
});
