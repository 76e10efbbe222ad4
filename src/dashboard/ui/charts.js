// Charts as inline SVG: nothing to load, nothing fetched from outside.

/** Completed (green) and failed (red) per minute, all queues stacked, the last 15 minutes. */
function throughput(html, series) {
  const W = 900, H = 150, pad = { l: 36, r: 8, t: 8, b: 20 };
  const n = series.minutes.length;
  const completed = series.minutes.map((_, i) => Object.values(series.queues).reduce((a, q) => a + q.completed[i], 0));
  const failed = series.minutes.map((_, i) => Object.values(series.queues).reduce((a, q) => a + q.failed[i], 0));
  const max = Math.max(1, ...completed.map((c, i) => c + failed[i]));
  const bw = (W - pad.l - pad.r) / n;
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - v / max);
  const label = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return html`<svg viewBox=${`0 0 ${W} ${H}`} width="100%" role="img" aria-label="throughput" data-testid="throughput">
    <line x1=${pad.l} x2=${W - pad.r} y1=${y(0)} y2=${y(0)} stroke="#c3c9d6" />
    <text x=${pad.l - 6} y=${y(max) + 4} text-anchor="end" font-size="11" fill="#6b7385">${max}</text>
    <text x=${pad.l - 6} y=${y(0)} text-anchor="end" font-size="11" fill="#6b7385">0</text>
    ${series.minutes.map((m, i) => {
      const x = pad.l + i * bw + 2;
      const c = completed[i], f = failed[i];
      return html`<g>
        <title>${label(m)}: ${c} completed, ${f} failed</title>
        <rect x=${x} width=${bw - 4} y=${y(c)} height=${y(0) - y(c)} fill="#1f9d55" />
        <rect x=${x} width=${bw - 4} y=${y(c + f)} height=${y(c) - y(c + f)} fill="#d64545" />
        ${i % 3 === 0 || i === n - 1 ? html`<text x=${x + (bw - 4) / 2} y=${H - 5} text-anchor="middle" font-size="11" fill="#6b7385">${label(m)}</text>` : null}
      </g>`;
    })}
  </svg>`;
}

/** Each attempt as a bar on one time axis, from enqueue to the end (or now). */
function attempts(html, job) {
  if (job.attempts.length === 0) return html`<p class="muted">not started yet</p>`;
  const W = 900, row = 22, pad = 60;
  const start = job.enqueuedAt;
  const end = Math.max(job.finishedAt ?? 0, ...job.attempts.map((a) => a.finishedAt ?? Date.now()), start + 1);
  const x = (t) => pad + ((W - pad - 10) * (t - start)) / (end - start);
  const H = job.attempts.length * row + 24;
  return html`<svg viewBox=${`0 0 ${W} ${H}`} width="100%" data-testid="attempts-timeline">
    <line x1=${pad} x2=${W - 10} y1=${H - 18} y2=${H - 18} stroke="#c3c9d6" />
    <text x=${pad} y=${H - 4} font-size="11" fill="#6b7385">enqueued</text>
    <text x=${W - 10} y=${H - 4} font-size="11" fill="#6b7385" text-anchor="end">+${end - start} ms</text>
    ${job.attempts.map((a, i) => {
      const x1 = x(a.startedAt), x2 = Math.max(x1 + 3, x(a.finishedAt ?? Date.now()));
      const color = a.error ? '#d64545' : a.finishedAt ? '#1f9d55' : '#3559d6';
      return html`<g><text x="4" y=${i * row + 15} font-size="12" fill="#394157">#${a.n}</text>
        <rect x=${x1} y=${i * row + 4} width=${x2 - x1} height=${row - 8} rx="3" fill=${color}><title>${a.error ? a.error.message : a.finishedAt ? 'ok' : 'running'}</title></rect></g>`;
    })}
  </svg>`;
}

/** One queue's minutes as a small bar strip: completed up, failed down from a middle line. */
function sparkline(html, completed, failed) {
  const W = 120, H = 24, mid = 14, n = completed.length;
  const max = Math.max(1, ...completed, ...failed);
  const bw = W / n;
  return html`<svg viewBox=${`0 0 ${W} ${H}`} width=${W} height=${H} aria-hidden="true" class="spark">
    <line x1="0" x2=${W} y1=${mid} y2=${mid} stroke="#dde1e8" />
    ${completed.map((c, i) => c > 0 && html`<rect x=${i * bw + 1} width=${bw - 2} y=${mid - (mid - 1) * (c / max)} height=${(mid - 1) * (c / max)} fill="#1f9d55" />`)}
    ${failed.map((f, i) => f > 0 && html`<rect x=${i * bw + 1} width=${bw - 2} y=${mid} height=${(H - mid) * (f / max)} fill="#d64545" />`)}
  </svg>`;
}

export const charts = { throughput, attempts, sparkline };
