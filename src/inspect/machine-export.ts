/**
 * `naq machines`: every machine as JSON that `createMachine` (and Stately's editor) accept
 * (machine-json.ts), or as Mermaid diagrams (machine-mermaid.ts).
 */
import type { AnyStateMachine } from 'xstate';
import { machineToJSON, type JSONObject } from './machine-json.js';
import { machineToMermaid } from './machine-mermaid.js';

export { machineToJSON, type JSONObject, type JSONValue } from './machine-json.js';
export { machineToMermaid } from './machine-mermaid.js';

export type MachineExportFormat = 'json' | 'mermaid';

export interface MermaidBlock {
  name: string;
  diagram: string;
}

// ---------------------------------------------------------------------------
// Many machines
// ---------------------------------------------------------------------------

/** One diagram per machine, in the order given, e.g. for README code blocks. */
export function mermaidBlocks(machines: Record<string, AnyStateMachine>): MermaidBlock[] {
  return Object.entries(machines).map(([name, machine]) => ({ name, diagram: machineToMermaid(machine) }));
}

/**
 * `json`: one pretty object keyed by machine name. `mermaid`: each diagram
 * under a `%% <name>` comment line, separated by blank lines.
 */
export function exportMachines(machines: Record<string, AnyStateMachine>, format: MachineExportFormat): string {
  if (format === 'json') {
    const out: JSONObject = {};
    for (const [name, machine] of Object.entries(machines)) out[name] = machineToJSON(machine);
    return JSON.stringify(out, null, 2);
  }
  if (format === 'mermaid') {
    return mermaidBlocks(machines)
      .map(({ name, diagram }) => `%% ${name.replace(/[\r\n]+/g, ' ')}\n${diagram}`)
      .join('\n\n');
  }
  throw new Error(`Unknown machine export format '${String(format)}' (expected 'json' or 'mermaid')`);
}
