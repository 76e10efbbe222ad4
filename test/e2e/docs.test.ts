import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/paths.js';

const root = ROOT;
const readme = () => readFileSync(resolve(root, 'README.md'), 'utf8');

describe('docs', () => {
  // One `naq … --help` process per command: ~40 of them, ~0.4 s of CPU each (0.8 s before the
  // CLI loaded its modules lazily).
  it('docs/cli.md is what `naq --help` prints for every command', async () => {
    const { cliReference } = (await import(resolve(root, 'scripts/cli-docs.mjs'))) as { cliReference: () => Promise<string> };
    expect(readFileSync(resolve(root, 'docs/cli.md'), 'utf8')).toBe(await cliReference());
  }, 120_000);

  it('every TypeScript sample in the README compiles against the published entry point', () => {
    const samples = [...readme().matchAll(/```ts\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
    expect(samples.length).toBeGreaterThanOrEqual(2);
    // Inside the package, so `import ... from 'naq'` resolves through package.json "exports".
    const dir = resolve(root, '.readme-samples');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    samples.forEach((code, i) => writeFileSync(resolve(dir, `sample-${i}.ts`), `${code}\nexport {};\n`));
    writeFileSync(
      resolve(dir, 'tsconfig.json'),
      JSON.stringify({ extends: '../tsconfig.json', compilerOptions: { noEmit: true, rootDir: '.' }, include: ['*.ts'] }),
    );
    const tsc = resolve(root, 'node_modules/typescript/bin/tsc');
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', resolve(dir, 'tsconfig.json')], { encoding: 'utf8' });
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? error);
    }
    expect(output).toBe('');
  }, 60_000);

  it('every naq command in the README’s shell samples exists', () => {
    const reference = readFileSync(resolve(root, 'docs/cli.md'), 'utf8');
    const commands = [...readme().matchAll(/```sh\n([\s\S]*?)\n```/g)]
      .flatMap((m) => m[1]!.split('\n'))
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter((l) => /^(npx )?naq /.test(l))
      .map((l) => l.replace(/^npx /, '').split(' ').slice(0, 3));
    expect(commands.length).toBeGreaterThan(5);
    for (const words of commands) {
      // The longest command path the reference documents (naq schedule add, naq worker, ...).
      const path = [3, 2].map((n) => words.slice(0, n).join(' ')).find((p) => reference.includes(`## ${p}\n`));
      expect(path, words.join(' ')).toBeDefined();
    }
  });
});
