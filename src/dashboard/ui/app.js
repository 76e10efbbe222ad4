// The naq dashboard's pages: preact + htm as plain ES modules (no build step), routed by the
// URL's hash, refreshed by the server's event stream (/api/live) rather than by reloading.
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { charts } from './charts.js';

const html = htm.bind(h);
const csrf = document.querySelector('meta[name="naq-csrf"]').content;
const STATES = ['pending', 'delayed', 'waiting', 'active', 'retrying', 'completed', 'failed', 'dead', 'cancelled'];

// ---- the live stream: each message goes to the pages, which decide whether to fetch ----
// A message: { kind: 'open' | 'down' | 'tick' | 'events' | 'action', events?: [{ type, queue, jobId }] }
const live = { version: 0, queues: null, up: false, listeners: new Set() };
function publish(message) {
  live.version++;
  for (const l of live.listeners) l(message);
}
function connectLive() {
  const source = new EventSource('/api/live');
  source.addEventListener('open', () => { live.up = true; publish({ kind: 'open' }); });
  source.addEventListener('error', () => { live.up = false; publish({ kind: 'down' }); });
  source.addEventListener('tick', (e) => {
    const data = JSON.parse(e.data);
    if (data.queues) live.queues = data.queues;
    publish({ kind: 'tick' });
  });
  source.addEventListener('jobs', (e) => publish({ kind: 'events', events: JSON.parse(e.data) }));
}
connectLive();

/** Re-renders on every live message; returns the message count. */
function useLive() {
  const [version, setVersion] = useState(live.version);
  useEffect(() => {
    const on = () => setVersion(live.version);
    live.listeners.add(on);
    return () => live.listeners.delete(on);
  }, []);
  return version;
}

/**
 * GETs `url` now, again at once after the page's own action or when a live message is
 * `relevant`, and on the ticks at most every `everyMs`: a busy queue's events must not turn
 * into a request each quarter second. One request at a time; one more if asked meanwhile.
 */
const MIN_GAP_MS = 500;
function useData(url, { relevant = () => false, everyMs = 1000 } = {}) {
  const [state, setState] = useState({ data: null, error: null, url: null });
  const inFlight = useRef(false);
  const again = useRef(false);
  const last = useRef(0);
  const load = useRef(null);
  load.current = () => {
    if (inFlight.current) { again.current = true; return; }
    inFlight.current = true;
    last.current = Date.now();
    fetch(url, { headers: { accept: 'application/json' } })
      .then(async (r) => {
        const body = await r.json();
        if (!r.ok) throw new Error(body.error?.message ?? r.statusText);
        setState({ data: body, error: null, url });
      })
      .catch((error) => setState((s) => ({ ...s, error: error.message, url })))
      .finally(() => {
        inFlight.current = false;
        if (again.current) { again.current = false; load.current(); }
      });
  };
  const rules = useRef({ relevant, everyMs });
  rules.current = { relevant, everyMs };
  useEffect(() => {
    load.current();
    let soon = null;
    const on = (message) => {
      const { relevant, everyMs } = rules.current;
      const since = Date.now() - last.current;
      if (message.kind === 'action' || message.kind === 'open' || (message.kind === 'tick' && since >= everyMs)) load.current();
      else if (message.kind === 'events' && relevant(message.events) && !soon) {
        // At most two a second, and always one after the last relevant event.
        soon = setTimeout(() => { soon = null; load.current(); }, Math.max(0, MIN_GAP_MS - since));
      }
    };
    live.listeners.add(on);
    return () => { live.listeners.delete(on); clearTimeout(soon); };
  }, [url]);
  return state.url === url ? state : { data: state.data, error: null };
}

// ---- actions ----
let showToast = () => {};
async function act(path, body, done) {
  try {
    const r = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-naq-csrf': csrf },
      body: JSON.stringify(body ?? {}),
    });
    const out = await r.json();
    if (!r.ok) throw new Error(out.error?.message ?? r.statusText);
    showToast(done ?? 'done');
    publish({ kind: 'action' });
    return out;
  } catch (error) {
    showToast(error.message, true);
    return null;
  }
}

function Toast() {
  const [toast, setToast] = useState(null);
  useEffect(() => {
    let timer;
    showToast = (text, bad = false, href = null) => {
      setToast({ text, bad, href });
      clearTimeout(timer);
      timer = setTimeout(() => setToast(null), 4000);
    };
  }, []);
  if (!toast) return null;
  return html`<div class=${`toast ${toast.bad ? 'bad' : ''}`} role="status" data-testid="toast">${toast.text}${toast.href && html` <a href=${toast.href} style="color:#9db2ff">open</a>`}</div>`;
}

// ---- formatting ----
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '—');
function ago(ms) {
  if (!ms) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return `in ${duration(-s * 1000)}`;
  return `${duration(s * 1000)} ago`;
}
function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
const json = (v) => JSON.stringify(v, null, 2);
const Badge = ({ value }) => html`<span class=${`badge ${value}`}>${value}</span>`;
const enc = encodeURIComponent;

// ---- pages ----
function Overview({ session }) {
  const { data, error } = useData('/api/overview', { everyMs: 5000 });
  const queues = live.queues ?? data?.queues ?? [];
  const series = data?.throughput;
  const zeros = series ? series.minutes.map(() => 0) : [];
  const totals = (q) => {
    const s = series?.queues[q] ?? { completed: zeros, failed: zeros };
    return { ...s, total: { completed: s.completed.reduce((a, b) => a + b, 0), failed: s.failed.reduce((a, b) => a + b, 0) } };
  };
  return html`<h1>Overview</h1>
    ${error && html`<p class="bad">${error}</p>`}
    <div class="card">
      <div class="row"><b>Throughput, last 15 minutes</b><span class="legend muted"><i style="background:var(--ok)"></i>completed<i style="background:var(--bad)"></i>failed</span></div>
      ${series ? charts.throughput(html, series) : html`<p class="muted">loading…</p>`}
    </div>
    <table data-testid="queues">
      <thead><tr><th>queue</th><th class="num">pending</th><th class="num">in flight</th><th class="num">dead</th><th class="num">workers</th><th class="num">completed 15m</th><th class="num">failed 15m</th><th>per minute</th><th>state</th><th></th></tr></thead>
      <tbody>
        ${queues.length === 0 && html`<tr><td colspan="10" class="muted">no queues yet: enqueue a job</td></tr>`}
        ${queues.map((q) => {
          const t = totals(q.queue);
          return html`<tr data-queue=${q.queue}>
            <td><a href=${`#/queue/${enc(q.queue)}`}>${q.queue}</a></td>
            <td class="num" data-testid="pending">${q.pending}</td><td class="num" data-testid="inflight">${q.inFlight}</td>
            <td class="num" data-testid="dead">${q.dead}</td><td class="num">${q.workers}</td>
            <td class="num" data-testid="completed15">${t.total.completed}</td><td class="num" data-testid="failed15">${t.total.failed}</td>
            <td>${series && charts.sparkline(html, t.completed, t.failed)}</td>
            <td>${q.paused ? html`<${Badge} value="paused" />` : html`<span class="badge running">running</span>`} ${q.limit && html`<span class="badge" data-testid="limit" title="rate limit: starts per window, across all workers">${limitText(q)}</span>`}</td>
            <td>${!session.readOnly && html`<${PauseButton} queue=${q.queue} paused=${q.paused} />`}</td>
          </tr>`;
        })}
      </tbody>
    </table>`;
}

/** A queue's group limits as `2 running, 100 / 60s`. */
function groupLimitText(g) {
  const rate = g.rate && `${g.rate.max} / ${g.rate.durationMs % 1000 === 0 ? `${g.rate.durationMs / 1000}s` : `${g.rate.durationMs}ms`}`;
  return [g.concurrency !== undefined && `${g.concurrency} running`, rate].filter(Boolean).join(', ');
}

/** A queue's rate limit as `50 / 1s`, and the hold a rate-limited handler set, if any. */
function limitText(q) {
  const per = q.limit.durationMs % 1000 === 0 ? `${q.limit.durationMs / 1000}s` : `${q.limit.durationMs}ms`;
  return `${q.limit.max} / ${per}${q.heldUntil ? `, held until ${new Date(q.heldUntil).toLocaleTimeString()}` : ''}`;
}

function PauseButton({ queue, paused }) {
  return paused
    ? html`<button data-testid="resume" onClick=${() => act(`/api/queues/${enc(queue)}/resume`, {}, `${queue} resumed`)}>Resume</button>`
    : html`<button data-testid="pause" onClick=${() => act(`/api/queues/${enc(queue)}/pause`, {}, `${queue} paused`)}>Pause</button>`;
}

function QueuePage({ session, queue, params }) {
  const state = params.get('state') ?? '';
  const name = params.get('name') ?? '';
  const id = params.get('id') ?? '';
  const cursor = params.get('cursor') ?? '';
  const limit = params.get('limit') ?? '50';
  const stats = useData(`/api/queues/${enc(queue)}`).data;
  const query = new URLSearchParams({ queue, limit });
  if (state) query.set('state', state);
  if (name) query.set('name', name);
  if (id) query.set('id', id);
  if (cursor) query.set('cursor', cursor);
  const { data, error } = useData(`/api/jobs?${query}`, { relevant: (events) => events.some((e) => e.queue === queue), everyMs: 5000 });
  const link = (change) => {
    const p = new URLSearchParams({ state, name, id, ...(limit !== '50' ? { limit } : {}), ...change });
    for (const [k, v] of [...p]) if (!v) p.delete(k);
    return `#/queue/${enc(queue)}?${p}`;
  };
  // What is typed stays typed while the live updates re-render the page.
  const [typed, setTyped] = useState({ id, name });
  useEffect(() => setTyped({ id, name }), [id, name]);
  const search = (e) => {
    e.preventDefault();
    location.hash = link({ name: typed.name.trim(), id: typed.id.trim(), cursor: '' });
  };
  const [olderThan, setOlderThan] = useState('0');
  return html`<h1>Queue ${queue} ${stats?.paused && html`<${Badge} value="paused" />`}</h1>
    ${stats && html`<div class="stats">
      <div class="stat"><b data-testid="q-pending">${stats.pending}</b><span>pending</span></div>
      <div class="stat"><b data-testid="q-inflight">${stats.inFlight}</b><span>in flight</span></div>
      <div class="stat"><b data-testid="q-dead">${stats.dead}</b><span>dead</span></div>
      <div class="stat"><b>${stats.workers}</b><span>workers</span></div>
      ${stats.limit && html`<div class="stat"><b data-testid="q-limit">${limitText(stats)}</b><span>rate limit</span></div>`}
      ${stats.groups && html`<div class="stat"><b data-testid="q-groups">${groupLimitText(stats.groups)}</b><span>per group</span></div>`}
      ${!session.readOnly && html`<div class="row"><${PauseButton} queue=${queue} paused=${stats.paused} /></div>`}
    </div>`}
    <div class="tabs" data-testid="state-tabs">
      <a class=${state ? '' : 'on'} href=${link({ state: '', cursor: '' })}>all</a>
      ${STATES.map((s) => html`<a class=${state === s ? 'on' : ''} href=${link({ state: s, cursor: '' })}>${s}</a>`)}
    </div>
    <form class="row" onSubmit=${search}>
      <input name="id" placeholder="job id" value=${typed.id} onInput=${(e) => setTyped({ ...typed, id: e.target.value })} data-testid="search-id" />
      <input name="name" placeholder="job name" value=${typed.name} onInput=${(e) => setTyped({ ...typed, name: e.target.value })} data-testid="search-name" />
      <button type="submit">Search</button>
      ${(id || name) && html`<a href=${link({ id: '', name: '', cursor: '' })}>clear</a>`}
      ${!session.readOnly && (state === 'dead' || state === 'failed') &&
        html`<button class="primary" data-testid="retry-all" onClick=${(e) => { e.preventDefault(); act(`/api/queues/${enc(queue)}/retry`, { state, ...(name ? { name } : {}) }).then((r) => r && showToast(`${r.retried} retried${r.skippedCount ? `, ${r.skippedCount} skipped (${r.skipped[0]?.reason ?? ''})` : ''}`, r.skippedCount > 0)); }}>Retry all ${state}</button>`}
      ${!session.readOnly && ['completed', 'failed', 'cancelled', 'dead'].includes(state) &&
        html`<span class="row"><select value=${olderThan} onChange=${(e) => setOlderThan(e.target.value)}>
            <option value="0">all</option><option value="3600000">older than 1 hour</option><option value="86400000">older than 1 day</option>
          </select><button class="danger" data-testid="clean" onClick=${(e) => { e.preventDefault(); if (confirm(`Remove ${state} jobs of ${queue}?`)) act(`/api/queues/${enc(queue)}/clean`, { state, olderThanMs: Number(olderThan), ...(name ? { name } : {}) }).then((r) => r && showToast(`${r.removed} removed`)); }}>Clean ${state}</button></span>`}
    </form>
    ${error && html`<p class="bad" data-testid="error">${error}</p>`}
    <h2>Jobs</h2>
    <table data-testid="jobs">
      <thead><tr><th>id</th><th>name</th><th>state</th><th>since</th><th class="num">attempts</th><th>error</th></tr></thead>
      <tbody>
        ${data && data.jobs.length === 0 && html`<tr><td colspan="6" class="muted">no jobs</td></tr>`}
        ${(data?.jobs ?? []).map((j) => html`<tr data-job=${j.id}>
          <td><a href=${`#/job/${enc(j.id)}`}>${j.id}</a></td><td>${j.name}</td><td><${Badge} value=${j.state} /></td>
          <td title=${fmtTime(j.at)}>${ago(j.at)}</td><td class="num">${j.attempts}/${j.maxAttempts}</td><td class="bad">${j.error ?? ''}</td></tr>`)}
      </tbody>
    </table>
    <div class="row" style="margin-top:10px">
      ${cursor && html`<a href=${link({ cursor: '' })}>first page</a>`}
      ${data?.cursor && html`<a data-testid="next-page" href=${link({ cursor: data.cursor })}>next page →</a>`}
    </div>`;
}

/** The stack's frames: a stack starts with the name and message the line above already shows. */
function frames(error) {
  if (!error.stack) return '';
  const head = `${error.name}: ${error.message}`;
  return error.stack.startsWith(head) ? error.stack.slice(head.length) : `\n${error.stack}`;
}

function ErrorInfo({ error }) {
  if (!error) return null;
  return html`<div>
    <pre class="bad" data-testid="job-error">${error.name}${error.code ? ` [${error.code}]` : ''}: ${error.message}${frames(error)}</pre>
    ${error.cause && html`<div style="margin:6px 0 0 16px"><span class="muted">caused by</span><${ErrorInfo} error=${error.cause} /></div>`}
  </div>`;
}

function JobPage({ session, id }) {
  const { data, error } = useData(`/api/jobs/${enc(id)}`, { relevant: (events) => events.some((e) => e.jobId === id), everyMs: 10_000 });
  if (error && !data) return html`<h1>Job ${id}</h1><p class="bad">${error}</p>`;
  if (!data) return html`<p class="muted">loading…</p>`;
  const { job, events, flow } = data;
  const state = job.deadSeq !== undefined && job.status === 'failed' ? 'dead' : job.status;
  const ro = session.readOnly;
  const canRetry = job.status === 'failed' && job.deadSeq !== undefined;
  const canCancel = ['pending', 'delayed', 'waiting', 'active', 'retrying'].includes(job.status);
  const progress = typeof job.progress === 'number' ? job.progress : null;
  return html`<h1>Job <span data-testid="job-id">${job.id}</span> <span data-testid="job-state"><${Badge} value=${state} /></span></h1>
    <div class="card row">
      <span>name <b>${job.name}</b></span><span>queue <a href=${`#/queue/${enc(job.queue)}`}>${job.queue}</a></span>
      <span>attempts <b>${job.attempts.length}/${job.maxAttempts}</b></span><span>enqueued ${fmtTime(job.enqueuedAt)}</span>
      ${job.priority !== undefined && html`<span>priority <b data-testid="job-priority">${job.priority}</b></span>`}
      ${job.group !== undefined && html`<span>group <b data-testid="job-group">${job.group}</b></span>`}
      ${job.finishedAt && html`<span>finished ${fmtTime(job.finishedAt)}</span>`}
      ${!ro && html`<span class="row" style="margin-left:auto">
        ${canRetry && html`<button class="primary" data-testid="retry" onClick=${() => act(`/api/jobs/${enc(id)}/retry`, {}, 'retried')}>Retry</button>`}
        ${canCancel && html`<button data-testid="cancel" onClick=${() => act(`/api/jobs/${enc(id)}/cancel`, {}, 'cancelled')}>Cancel</button>`}
        ${job.status === 'delayed' && html`<button data-testid="promote" onClick=${() => act(`/api/jobs/${enc(id)}/promote`, {}, 'promoted: it runs now')}>Run now</button>`}
        <button class="danger" data-testid="remove" onClick=${() => confirm(`Remove job ${id}?`) && act(`/api/jobs/${enc(id)}/remove`, {}, 'removed')}>Remove</button>
      </span>`}
    </div>
    ${job.parent !== undefined && html`<p>part of the flow or batch of <a data-testid="job-parent" href=${`#/job/${enc(job.parent)}`}>${job.parent}</a></p>`}
    ${flow && html`<h2>Flow</h2><ul class="flow" data-testid="flow"><${FlowNode} node=${flow} /></ul>`}
    ${progress !== null && html`<div class="card row"><b>progress</b><div class="progress"><i style=${`width:${Math.max(0, Math.min(100, progress))}%`}></i></div>${progress}%</div>`}
    ${progress === null && job.progress !== undefined && html`<div class="card"><b>progress</b><pre>${json(job.progress)}</pre></div>`}
    ${job.error && html`<h2>Error</h2><${ErrorInfo} error=${job.error} />`}
    <div class="grid2">
      <div><h2>Data</h2>${job.data !== undefined ? html`<pre data-testid="job-data">${json(job.data)}</pre>` : html`<p class="muted">no longer kept: a job's data travels in its message, gone once the job finished (a dead job keeps it in its dead letter)</p>`}</div>
      <div><h2>Result</h2>${job.result !== undefined ? html`<pre data-testid="job-result">${json(job.result)}</pre>` : html`<p class="muted">none</p>`}</div>
    </div>
    <h2>Attempts</h2>
    ${charts.attempts(html, job)}
    <table>
      <thead><tr><th class="num">#</th><th>started</th><th>took</th><th>worker</th><th>error</th></tr></thead>
      <tbody>${job.attempts.map((a) => html`<tr><td class="num">${a.n}</td><td>${fmtTime(a.startedAt)}</td>
        <td>${a.finishedAt ? `${a.finishedAt - a.startedAt} ms` : 'running'}</td><td class="muted">${a.workerId ?? ''}</td><td class="bad">${a.error?.message ?? ''}</td></tr>`)}</tbody>
    </table>
    <h2>Logs</h2>
    ${job.logsDropped ? html`<p class="muted">${job.logsDropped} earlier lines dropped (jobs.maxLogLines)</p>` : null}
    ${job.logs && job.logs.length > 0
      ? html`<table class="logs" data-testid="job-logs"><tbody>${job.logs.map((l) => html`<tr><td class="muted">${new Date(l.ts).toLocaleTimeString()}</td><td class="muted">#${l.attempt}</td><td class=${l.level === 'error' || l.level === 'fatal' ? 'bad' : ''}>${l.level}</td><td>${l.msg}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">no lines logged</p>`}
    <h2>Events</h2>
    <table><tbody>${events.map((e) => html`<tr><td class="muted">${fmtTime(e.ts)}</td><td>${e.type}</td><td class="muted">${e.workerId ?? ''}</td><td><code>${e.data ? JSON.stringify(e.data) : ''}</code></td></tr>`)}</tbody></table>`;
}

/** One node of a flow and its children: a link, its state, and what its parent does if it fails. */
function FlowNode({ node }) {
  return html`<li data-node=${node.id}>
    <a href=${`#/job/${enc(node.id)}`}><code>${node.id}</code></a> ${node.name} <span class="muted">on ${node.queue}</span> <${Badge} value=${node.state} />
    ${node.onFailure && html` <span class="muted">onFailure ${node.onFailure}</span>`}
    ${node.error && html` <span class="bad">${node.error}</span>`}
    ${node.children && html`<ul>${node.children.map((c) => html`<${FlowNode} node=${c} />`)}${node.more ? html`<li class="muted">… ${node.more} more</li>` : null}</ul>`}
  </li>`;
}

// In flight is not shown as a share of concurrency: it counts outcomes still being written
// too, so it may exceed the handlers' slots.
function WorkersPage() {
  const { data, error } = useData('/api/workers');
  return html`<h1>Workers</h1>${error && html`<p class="bad">${error}</p>`}
    <table data-testid="workers">
      <thead><tr><th>worker</th><th>host</th><th>queues</th><th>status</th><th class="num">in flight</th><th class="num">concurrency</th><th class="num">processed</th><th class="num">failed</th><th>uptime</th><th>heartbeat</th></tr></thead>
      <tbody>
        ${data && data.length === 0 && html`<tr><td colspan="10" class="muted">no live workers</td></tr>`}
        ${(data ?? []).map((w) => html`<tr data-worker=${w.id}>
          <td><code>${w.id}</code></td><td>${w.host} <span class="muted">pid ${w.pid}</span></td><td>${w.queues.join(', ')}</td>
          <td><${Badge} value=${w.status} /></td><td class="num">${w.inFlight}</td><td class="num">${w.concurrency}</td><td class="num">${w.processed}</td><td class="num">${w.failed}</td>
          <td>${duration(Date.now() - w.startedAt)}</td><td>${ago(w.ts)}</td></tr>`)}
      </tbody>
    </table>`;
}

function spec(s) {
  if (s.kind === 'cron') return `cron ${s.cron}${s.tz ? ` (${s.tz})` : ''}`;
  if (s.kind === 'every') return `every ${duration(s.every)}`;
  return `once at ${fmtTime(s.nextRunAt)}`;
}

function SchedulesPage({ session }) {
  const { data, error } = useData('/api/schedules', { relevant: (events) => events.some((e) => e.type.startsWith('schedule.')), everyMs: 5000 });
  const ro = session.readOnly;
  return html`<h1>Schedules</h1>${error && html`<p class="bad">${error}</p>`}
    <table data-testid="schedules">
      <thead><tr><th>schedule</th><th>when</th><th>job</th><th>status</th><th>next run</th><th>last run</th><th class="num">runs</th><th></th></tr></thead>
      <tbody>
        ${data && data.length === 0 && html`<tr><td colspan="8" class="muted">no schedules</td></tr>`}
        ${(data ?? []).map((s) => html`<tr data-schedule=${s.id}>
          <td><code>${s.id}</code></td><td>${spec(s)}</td><td>${s.name} <span class="muted">on ${s.queue}</span></td>
          <td><${Badge} value=${s.status} />${s.error && html`<div class="bad">${s.error}</div>`}</td>
          <td title=${fmtTime(s.nextRunAt)}>${s.nextRunAt ? ago(s.nextRunAt) : '—'}</td><td title=${fmtTime(s.lastRunAt)}>${ago(s.lastRunAt)}</td><td class="num">${s.runs}</td>
          <td class="row">${!ro && html`
            <button data-testid="run-now" onClick=${() => act(`/api/schedules/${enc(s.id)}/run`, {}, 'enqueued now').then((r) => r && showToast(`enqueued job ${r.jobId}`, false, `#/job/${enc(r.jobId)}`))}>Run now</button>
            ${s.status === 'paused'
              ? html`<button onClick=${() => act(`/api/schedules/${enc(s.id)}/resume`, {}, 'resumed')}>Resume</button>`
              : html`<button onClick=${() => act(`/api/schedules/${enc(s.id)}/pause`, {}, 'paused')}>Pause</button>`}
            <button class="danger" onClick=${() => confirm(`Remove schedule ${s.id}?`) && act(`/api/schedules/${enc(s.id)}/remove`, {}, 'removed')}>Remove</button>`}</td>
        </tr>`)}
      </tbody>
    </table>`;
}

function stateClass(state) {
  if (/leader|leading|connected|running|ready|serving|pulling/.test(state)) return 'active-ok';
  if (/fail|error/.test(state)) return 'error';
  if (/paused|reconnect|standby|follower|candidate|starting|recovering|draining/.test(state)) return 'paused';
  return '';
}

function TreeNode({ node }) {
  const facts = Object.entries(node.facts).map(([k, v]) => `${k} ${v}`).join(' · ');
  return html`<li data-actor=${node.id}>
    <span class="node"><b>${node.id}</b><span class=${`badge ${stateClass(node.state)}`} data-testid="actor-state">${node.state || node.status}</span>
      ${node.status !== 'active' && html`<${Badge} value=${node.status} />`}
      ${node.restarts > 0 && html`<span class="badge paused">restarted ${node.restarts}×</span>`}
      ${facts && html`<span class="facts">${facts}</span>`}</span>
    ${node.children.length > 0 && html`<ul>${node.children.map((c) => html`<${TreeNode} node=${c} />`)}</ul>`}
  </li>`;
}

function SystemPage() {
  const { data, error } = useData('/api/system');
  if (!data) return html`<h1>System</h1>${error ? html`<p class="bad">${error}</p>` : html`<p class="muted">loading…</p>`}`;
  const lease = data.leader.lease;
  return html`<h1>System</h1>
    ${data.problems.map((p) => html`<p class="bad">could not read ${p}</p>`)}
    <div class="stats">
      <div class="stat"><b><${Badge} value=${data.health.state} /></b><span>supervisor</span></div>
      <div class="stat"><b style="font-size:15px">${data.health.server ?? '—'}</b><span>NATS server</span></div>
      <div class="stat" data-testid="leader"><b style="font-size:15px">${lease ? `${lease.host ?? '?'} pid ${lease.pid ?? '?'}` : 'none'}</b>
        <span>scheduler leader${data.leader.here ? ' (this process)' : ''}${lease?.ts ? `, renewed ${ago(lease.ts)}` : ''}</span></div>
      <div class="stat"><b>${data.health.failures}</b><span>restarts</span></div>
    </div>
    <h2>Actors of this process</h2>
    <div class="card tree" data-testid="tree">${data.tree.length ? html`<ul>${data.tree.map((n) => html`<${TreeNode} node=${n} />`)}</ul>` : html`<p class="muted">no actor tree here</p>`}</div>
    <h2>Workers (from their heartbeats)</h2>
    <div class="card tree" data-testid="remote-workers"><ul>${data.workers.length === 0 && html`<li class="muted">none</li>`}
      ${data.workers.map((w) => html`<li data-worker=${w.id}><span class="node"><b>worker ${w.queues.join(', ')}</b><span class=${`badge ${stateClass(w.status)}`}>${w.status}</span>
        <span class="facts">${w.host} pid ${w.pid} · ${w.inFlight} in flight (concurrency ${w.concurrency}) · ${w.processed} processed · up ${duration(Date.now() - w.startedAt)}</span></span></li>`)}</ul></div>`;
}

// ---- the shell ----
function parseRoute(hash) {
  const [path, query] = hash.replace(/^#/, '').split('?');
  const parts = (path || '/').split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query ?? '') };
}

function App() {
  const [route, setRoute] = useState(parseRoute(location.hash));
  const [session, setSession] = useState(null);
  const version = useLive();
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    fetch('/api/session').then((r) => r.json()).then(setSession);
    return () => removeEventListener('hashchange', on);
  }, []);
  if (!session) return html`<p class="loading">loading…</p>`;
  const [page, arg] = route.parts;
  const nav = [['', 'Overview'], ['workers', 'Workers'], ['schedules', 'Schedules'], ['system', 'System']];
  let body;
  if (page === 'queue' && arg) body = html`<${QueuePage} key=${arg} session=${session} queue=${arg} params=${route.params} />`;
  else if (page === 'job' && arg) body = html`<${JobPage} key=${arg} session=${session} id=${arg} />`;
  else if (page === 'workers') body = html`<${WorkersPage} />`;
  else if (page === 'schedules') body = html`<${SchedulesPage} session=${session} />`;
  else if (page === 'system') body = html`<${SystemPage} />`;
  else body = html`<${Overview} session=${session} />`;
  return html`<header>
      <span class="brand">naq</span>
      <nav>${nav.map(([p, label]) => html`<a class=${(page ?? '') === p || (p === '' && page === 'queue') ? 'on' : ''} href=${`#/${p}`}>${label}</a>`)}</nav>
      <span class=${`live ${live.up ? 'up' : 'down'}`} data-testid="live" data-version=${version}>${live.up ? 'live' : 'reconnecting'}${session.readOnly ? ' · read-only' : ''}${session.hidePayloads ? ' · payloads hidden' : ''}</span>
    </header>
    <main>${body}</main><${Toast} />`;
}

render(html`<${App} />`, document.getElementById('app'));
