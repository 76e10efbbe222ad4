/** `naq flow ID` and `naq batch ID`: a flow's tree and a batch's progress. */
import type { BatchStatus, FlowNode } from '../actors/jobs/flow-reads.js';
import { jobIdArg } from './args.js';
import { formatTime, show } from './output.js';
import { defineCommand, need, withNaq } from './shared.js';

/** One line per node, indented by depth: `id name (queue) state`, and why it failed. */
export function flowText(node: FlowNode, depth = 0): string[] {
  const how = node.onFailure ? ` [onFailure ${node.onFailure}]` : '';
  const why = node.error ? `: ${node.error}` : '';
  return [`${'  '.repeat(depth)}${node.id} ${node.name} (${node.queue}) ${node.state}${how}${why}`, ...(node.children ?? []).flatMap((c) => flowText(c, depth + 1))];
}

function batchText(b: BatchStatus): string[] {
  return [
    `batch ${b.id}: ${b.state}`,
    `  jobs ${b.total}: ${b.completed} completed, ${b.failed} failed, ${b.pending} not finished`,
    ...(b.failedIds.length ? [`  failed: ${b.failedIds.slice(0, 20).join(', ')}${b.failedIds.length > 20 ? `, … (${b.failedIds.length - 20} more)` : ''}`] : []),
    `  on completion: ${b.completion.name} (${b.completion.queue}), job ${b.completion.id}`,
    `  created ${formatTime(b.createdAt)}`,
  ];
}

const flow = defineCommand({
  command: 'flow [id]',
  describe: 'show a flow (enqueueFlow) from the job ID down: each node with its state',
  builder: (y) => y.positional('id', { type: 'string', describe: 'the id of a flow parent (or of any node, for its subtree)' }).check(need('id')),
  handler: (args) => {
    const id = jobIdArg('id', args.id!);
    return withNaq(args, async (naq) => show(args, await naq.getFlow(id), (node) => flowText(node)));
  },
});

const batch = defineCommand({
  command: 'batch [id]',
  describe: "show a batch (enqueueBatch): its jobs' progress, then its completion job's state",
  builder: (y) => y.positional('id', { type: 'string', describe: 'the batch id (its completion job id)' }).check(need('id')),
  handler: (args) => {
    const id = jobIdArg('id', args.id!);
    return withNaq(args, async (naq) => show(args, await naq.getBatch(id), batchText));
  },
});

export const flowCommands = { flow, batch };
