/** `naq inspect-replay`, `naq config`, `naq machines`: commands that never connect. */
import { readFile } from 'node:fs/promises';
import { UsageError } from './args.js';
import { print, show } from './output.js';
import { configFrom, defineCommand, need } from './shared.js';

const inspectReplay = defineCommand({
  command: 'inspect-replay [file]',
  describe: 'replay an --inspect-record file: the states each actor went through, in order',
  builder: (y) => y.positional('file', { type: 'string' }).check(need('file')),
  handler: async (args) => {
    const text = await readFile(args.file!, 'utf8').catch((error: unknown) => {
      throw new UsageError(`cannot read ${args.file}: ${error instanceof Error ? error.message : String(error)}`);
    });
    const { replayRecording } = await import('../inspect/inspector.js');
    const states = replayRecording(text);
    show(args, Object.fromEntries(states), () => [...states].map(([actor, seq]) => `${actor}: ${seq.join(' → ')}`));
  },
});

const config = defineCommand({
  command: 'config',
  describe: 'print the effective configuration (secrets redacted)',
  builder: (y) => y,
  // A YAML document ends with its own newline; print adds one.
  handler: async (args) => {
    const config = await configFrom(args);
    const [{ redactConfig }, { yaml }] = await Promise.all([import('../config/secrets.js'), import('../config/file.js')]);
    show(args, redactConfig(config), (c) => yaml().stringify(c).replace(/\n$/, ''));
  },
});

const machines = defineCommand({
  command: 'machines',
  describe: 'print every machine definition (JSON for Stately tools, or Mermaid diagrams)',
  builder: (y) => y.option('format', { choices: ['json', 'mermaid'] as const, default: 'json' as const, describe: 'output format' }),
  handler: async (args) => {
    const [{ exportMachines }, { MACHINES }] = await Promise.all([import('../inspect/machine-export.js'), import('../machines/index.js')]);
    print(exportMachines(MACHINES, args.format));
  },
});

export const toolCommands = { inspectReplay, config, machines };
