/** Machine → Mermaid `stateDiagram-v2` text, for README code blocks and `naq machines --format mermaid`. */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { actorName, guardLabel, INLINE, isRecord, toArray } from './machine-json.js';

// ---------------------------------------------------------------------------
// Machine -> Mermaid stateDiagram-v2
// ---------------------------------------------------------------------------

// Mermaid's state lexer treats these words as keywords (case-insensitively);
// `root` is the id of its implicit top-level document. Older releases match
// `default` with no word boundary, so any id starting with it breaks there.
const MERMAID_RESERVED = new Set([
  'state', 'note', 'class', 'classdef', 'style', 'click', 'href', 'scale', 'direction', 'hide', 'statediagram',
  'root', 'root_start', 'root_end',
]);

function mermaidSafeId(raw: string): string {
  let id = raw.replace(/[^A-Za-z0-9_]/g, '_');
  if (id === '' || /^_+$/.test(id)) id = `s${id}`;
  if (MERMAID_RESERVED.has(id.toLowerCase()) || /^default/i.test(id)) id = `s_${id}`;
  return id;
}

const MERMAID_ENTITIES: Record<string, string> = {
  '#': '#35;',
  ':': '#58;',
  ';': '#59;',
  '"': '#quot;',
  '<': '#lt;',
  '>': '#gt;',
};

/**
 * Mermaid releases before 2026 end a transition label at `:` or `;` (so
 * `done: fetcher` fails to parse there), `<...>` is sanitised as HTML and
 * `#...;` is read as an entity. Writing these characters as entity codes
 * parses everywhere and renders as the original text.
 */
function mermaidText(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/[#:;"<>]/g, (c) => MERMAID_ENTITIES[c] ?? c);
}

interface Edge {
  source: AnyStateNode;
  target: AnyStateNode;
  label: string;
}

type Scope = AnyStateNode | 'top';

function allNodes(root: AnyStateNode): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const walk = (node: AnyStateNode): void => {
    out.push(node);
    for (const child of Object.values(node.states) as AnyStateNode[]) walk(child);
  };
  walk(root);
  return out;
}

function isProperAncestor(ancestor: AnyStateNode, node: AnyStateNode): boolean {
  for (let p = node.parent; p; p = p.parent) if (p === ancestor) return true;
  return false;
}

function hasChildren(node: AnyStateNode): boolean {
  return Object.keys(node.states).length > 0;
}

/** Short event label: invoke completion events are named after their actor. */
function eventLabel(node: AnyStateNode, descriptor: string, srcByInvokeId: Map<string, string>): string {
  const m = /^xstate\.(done\.actor|error\.actor|snapshot)\.(.+)$/.exec(descriptor);
  if (m) {
    const kind = m[1] === 'done.actor' ? 'done' : m[1] === 'error.actor' ? 'error' : 'snapshot';
    return `${kind}: ${srcByInvokeId.get(m[2]!) ?? m[2]!}`;
  }
  if (descriptor === `xstate.done.state.${node.id}`) return 'onDone';
  return descriptor;
}

function collectEdges(machine: AnyStateMachine, nodes: AnyStateNode[]): Edge[] {
  const srcByInvokeId = new Map<string, string>();
  for (const node of nodes) {
    // `node.invoke` is built 1:1 from the configured invokes, in order.
    const configured = toArray((node.config as Record<string, unknown>).invoke as unknown);
    node.invoke.forEach((inv, i) => {
      const config = configured[i];
      const src = isRecord(config) ? config.src : undefined;
      const explicitId = isRecord(config) && typeof config.id === 'string';
      srcByInvokeId.set(inv.id, actorName(machine, src) ?? (explicitId ? inv.id : INLINE));
    });
  }

  const edges: Edge[] = [];
  for (const node of nodes) {
    const push = (label: string, t: { target?: readonly AnyStateNode[] | undefined; guard?: unknown }): void => {
      const text = t.guard === undefined ? label : `${label} [${guardLabel(t.guard)}]`;
      // A targetless transition handles the event without leaving the state.
      const targets = t.target && t.target.length > 0 ? t.target : [node];
      for (const target of targets) edges.push({ source: node, target, label: text });
    };
    for (const [descriptor, transitions] of node.transitions) {
      // Route transitions are synthesised on the root for `route` configs
      // (reachable from anywhere); drawing them would wire the root to them.
      if (descriptor === 'xstate.route') continue;
      for (const t of transitions) {
        const delay = (t as { delay?: unknown }).delay;
        push(delay !== undefined ? `after ${String(delay)}` : eventLabel(node, descriptor, srcByInvokeId), t);
      }
    }
    for (const t of node.always ?? []) push('always', t);
  }
  return edges;
}

/**
 * Where a transition line goes: the innermost block holding both ends. The
 * root counts as a block only when the machine is drawn as a composite.
 */
function edgeScope(edge: Edge, wrapped: boolean): Scope {
  let scope: AnyStateNode | undefined = edge.source.parent;
  while (scope && !isProperAncestor(scope, edge.target)) scope = scope.parent;
  // Lines between concurrent regions cannot sit inside a `--` section.
  while (scope && scope.type === 'parallel') scope = scope.parent;
  return scopeOf(scope, wrapped);
}

function scopeOf(node: AnyStateNode | undefined, wrapped: boolean): Scope {
  if (!node || (!node.parent && !wrapped)) return 'top';
  return node;
}

function assignMermaidIds(nodes: AnyStateNode[], rootId: string | undefined): Map<AnyStateNode, string> {
  const ids = new Map<AnyStateNode, string>();
  const used = new Set<string>();
  const claim = (node: AnyStateNode, preferred: string): void => {
    let id = preferred;
    for (let i = 2; used.has(id); i++) id = `${preferred}_${i}`;
    used.add(id);
    ids.set(node, id);
  };
  if (rootId !== undefined) claim(nodes[0]!, rootId);

  // A state is named by its key when that is unique in the machine, else by
  // as many trailing path segments as it takes (`upload_pending`).
  const children = nodes.filter((n) => n.parent);
  const suffix = (n: AnyStateNode, depth: number): string => mermaidSafeId(n.path.slice(-depth).join('_'));
  const counts = new Map<number, Map<string, number>>();
  const countAt = (depth: number): Map<string, number> => {
    let c = counts.get(depth);
    if (!c) {
      c = new Map();
      for (const n of children) c.set(suffix(n, depth), (c.get(suffix(n, depth)) ?? 0) + 1);
      counts.set(depth, c);
    }
    return c;
  };
  for (const n of children) {
    let depth = 1;
    while (depth < n.path.length && countAt(depth).get(suffix(n, depth))! > 1) depth++;
    claim(n, suffix(n, depth));
  }
  // Mermaid names each composite's `[*]` pseudo-states `<id>_start`/`<id>_end`.
  const pseudo = new Set<string>();
  for (const [node, id] of ids) if (hasChildren(node)) pseudo.add(`${id}_start`).add(`${id}_end`);
  for (const [node, id] of ids) {
    if (!pseudo.has(id)) continue;
    used.delete(id);
    let next = `${id}_`;
    while (used.has(next) || pseudo.has(next)) next += '_';
    used.add(next);
    ids.set(node, next);
  }
  return ids;
}

/**
 * Mermaid `stateDiagram-v2` text. States and transitions follow definition
 * order. Each transition line is placed in the innermost composite block that
 * contains both of its ends, so Mermaid nests every state where it belongs.
 * The machine itself only becomes an outer composite when some transition
 * starts or ends on the root (e.g. a machine-wide `on`), since such a line
 * needs a node to attach to.
 */
export function machineToMermaid(machine: AnyStateMachine): string {
  const nodes = allNodes(machine.root);
  const provisional = collectEdges(machine, nodes);
  const wrapped = provisional.some((e) => !e.source.parent || !e.target.parent);
  const ids = assignMermaidIds(nodes, wrapped ? mermaidSafeId(machine.id) : undefined);
  const idOf = (n: AnyStateNode): string => ids.get(n)!;

  const edgesByScope = new Map<Scope, Edge[]>();
  for (const edge of provisional) {
    const scope = edgeScope(edge, wrapped);
    let list = edgesByScope.get(scope);
    if (!list) edgesByScope.set(scope, (list = []));
    list.push(edge);
  }

  const edgeLines = (scope: Scope): string[] =>
    (edgesByScope.get(scope) ?? []).map((e) => `${idOf(e.source)} --> ${idOf(e.target)} : ${mermaidText(e.label)}`);

  const label = (node: AnyStateNode): string | undefined => {
    const text = node.type === 'history' ? `${node.key} [H${node.history === 'deep' ? '*' : ''}]` : node.key;
    return text === idOf(node) ? undefined : text;
  };

  const declare = (node: AnyStateNode, indent: string): string[] => {
    const l = label(node);
    const head = l === undefined ? idOf(node) : `state "${mermaidText(l)}" as ${idOf(node)}`;
    if (!hasChildren(node)) return [indent + head];
    const open = l === undefined ? `state ${idOf(node)} {` : `${head} {`;
    return [indent + open, ...body(node, `${indent}  `), `${indent}}`];
  };

  function body(node: AnyStateNode, indent: string): string[] {
    const lines: string[] = [];
    const children = Object.values(node.states) as AnyStateNode[];
    if (node.type === 'parallel') {
      children.forEach((child, i) => {
        if (i > 0) lines.push(`${indent}--`);
        lines.push(...declare(child, indent));
      });
      return lines;
    }
    for (const target of node.initial.target as AnyStateNode[]) lines.push(`${indent}[*] --> ${idOf(target)}`);
    for (const child of children) lines.push(...declare(child, indent));
    lines.push(...edgeLines(scopeOf(node, wrapped)).map((l) => indent + l));
    for (const child of children) if (child.type === 'final') lines.push(`${indent}${idOf(child)} --> [*]`);
    return lines;
  }

  const lines = ['stateDiagram-v2'];
  if (wrapped) {
    lines.push(`  [*] --> ${idOf(machine.root)}`);
    lines.push(...declare(machine.root, '  '));
    lines.push(...edgeLines('top').map((l) => `  ${l}`));
  } else {
    lines.push(...body(machine.root, '  '));
  }
  return lines.join('\n');
}
