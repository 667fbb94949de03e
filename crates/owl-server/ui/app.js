// owl's dashboard: Preact with htm, no build step. Every figure comes from the same HTTP API
// the CLI uses; the session cookie authenticates, and changes carry the CSRF token.
import { h, render } from './preact.js';
import { useState, useEffect, useRef } from './hooks.js';
import htm from './htm.js';
import uPlot from './uplot.js';

const html = htm.bind(h);
let csrf = null;

async function api(path, opts = {}) {
  const o = { method: opts.method || 'GET', headers: {} };
  if (opts.body !== undefined) {
    o.body = JSON.stringify(opts.body);
    o.headers['content-type'] = 'application/json';
  }
  if (o.method !== 'GET') {
    if (!csrf) csrf = (await (await fetch('/ui/session')).json()).csrf;
    o.headers['x-csrf-token'] = csrf;
  }
  const r = await fetch(path, o);
  if (r.status === 401) {
    location.reload();
    throw new Error('signed out');
  }
  const type = r.headers.get('content-type') || '';
  const body = type.includes('json') ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${r.status}`);
  return body;
}

// Live: one event stream; pages refetch when something they show may have changed.
const listeners = new Set();
const EVENTS = ['task_submitted', 'task_started', 'task_changed', 'group_changed', 'config_reloaded', 'agent_step',
  'approval_requested', 'approval_decided', 'anomaly_detected', 'lagged'];
function connect() {
  const es = new EventSource('/v1/events');
  for (const name of EVENTS) {
    es.addEventListener(name, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch (_) { /* keep {} */ }
      for (const f of listeners) f(name, data);
    });
  }
  es.onerror = () => { document.body.dataset.live = 'reconnecting'; };
  es.onopen = () => { document.body.dataset.live = 'live'; };
}

/// Data from `load()`, fetched again on the events `when` accepts (at most once per `every`
/// ms, so a busy queue does not turn one open page into a load on the daemon) and on `deps`.
function useLive(load, deps, when = () => true, every = 250) {
  const [state, setState] = useState({ data: null, error: null });
  const tick = useRef(0);
  useEffect(() => {
    let alive = true;
    let timer = null;
    const run = () => load().then((data) => {
      if (!alive) return;
      setState({ data, error: null });
      // The first data on screen, for the dashboard benchmark (owl-bench dashboard).
      if (!window.owlDataShown) { window.owlDataShown = true; requestAnimationFrame(() => performance.mark('owl:data')); }
    }, (e) => alive && setState((s) => ({ data: s.data, error: e.message })));
    run();
    // At most one reload per `every` ms, however many events arrive (a steady stream never
    // postpones it).
    const f = (name, data) => {
      if (!when(name, data) || timer) return;
      timer = setTimeout(() => { timer = null; run(); }, every);
    };
    listeners.add(f);
    return () => { alive = false; listeners.delete(f); clearTimeout(timer); };
  }, deps.concat([tick.current]));
  return [state.data, state.error, () => { tick.current += 1; load().then((data) => setState({ data, error: null })); }];
}

const when = (t) => (t ? new Date(t).toLocaleString() : '-');
const ago = (t) => {
  if (!t) return '-';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  const a = Math.abs(s);
  const v = a < 90 ? `${a}s` : a < 5400 ? `${Math.round(a / 60)}m` : a < 172800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return s >= 0 ? `${v} ago` : `in ${v}`;
};
const usd = (v) => `$${(v || 0).toFixed(2)}`;
const Status = ({ s }) => html`<span class=${'s-' + s}>${s}</span>`;
const Err = ({ e }) => (e ? html`<p class="error" role="alert">${e}</p>` : null);
const Empty = ({ text }) => html`<p class="muted">${text}</p>`;
const link = (hash, text) => html`<a href=${'#' + hash}>${text}</a>`;

function Overview() {
  const [d, e] = useLive(async () => {
    const [status, running, failed, schedules, usage, approvals, anomalies, budgets] = await Promise.all([
      api('/v1/status'), api('/v1/tasks?status=running&limit=20'), api('/v1/tasks?status=failed,timed_out&limit=10'),
      api('/v1/schedules'), api('/v1/usage?by=day&since=1d'), api('/v1/approvals'), api('/v1/anomalies?since=24h&limit=10'), api('/v1/budgets'),
    ]);
    return { status, running, failed, schedules, usage, approvals, anomalies, budgets };
  }, [], (n) => n !== 'agent_step', 1000);
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  const t = d.status.tasks;
  const overdue = d.schedules.schedules.filter((s) => s.overdue);
  const over = d.budgets.budgets.filter((b) => b.waiting.length);
  const next = d.schedules.schedules.filter((s) => s.next_fire_at).sort((a, b) => a.next_fire_at.localeCompare(b.next_fire_at)).slice(0, 5);
  return html`<h1>Overview</h1><${Err} e=${e} />
    <div class="cards">
      <div class="card" id="card-running"><b>${t.running || 0}</b>running</div>
      <div class="card"><b>${(t.queued || 0) + (t.waiting || 0)}</b>queued or waiting</div>
      <div class="card"><b class=${(t.failed || 0) + (t.timed_out || 0) ? 'bad' : ''}>${(t.failed || 0) + (t.timed_out || 0)}</b>failed</div>
      <div class="card"><b class=${overdue.length ? 'bad' : ''}>${overdue.length}</b>schedules overdue</div>
      <div class="card"><b>${usd(d.usage.total.cost_usd)}</b>spent in 24h</div>
      <div class="card"><b class=${d.approvals.approvals.length ? 'bad' : ''}>${d.approvals.approvals.length}</b>${link('/agents', 'approvals waiting')}</div>
    </div>
    <h2>Needs you</h2>
    ${d.approvals.approvals.length || overdue.length || d.anomalies.anomalies.length || over.length ? html`<ul>
      ${over.map((b) => html`<li class="bad">budget ${b.scope}: ${b.waiting.length} task(s) waiting for room (${link('/usage', 'budgets')})</li>`)}
      ${d.approvals.approvals.map((a) => html`<li>approval ${a.id}: ${a.agent} wants ${a.tool} (${link('/agents', 'decide')})</li>`)}
      ${overdue.map((s) => html`<li class="bad">schedule ${s.name} is overdue (${link('/schedules', 'schedules')})</li>`)}
      ${d.anomalies.anomalies.map((a) => html`<li>${link('/tasks/' + a.task_id, 'task ' + a.task_id)}: ${a.summary}</li>`)}
    </ul>` : html`<${Empty} text="Nothing needs you." />`}
    <h2>Running</h2><${TaskTable} tasks=${d.running.tasks} />
    <h2>Recent failures</h2><${TaskTable} tasks=${d.failed.tasks} />
    <h2>Next fires</h2>
    ${next.length ? html`<div class="wrap"><table><thead><tr><th>Schedule</th><th>Next</th><th>Health</th></tr></thead><tbody>
      ${next.map((s) => html`<tr><td>${s.name}</td><td>${ago(s.next_fire_at)}</td><td>${s.overdue ? html`<span class="bad">OVERDUE</span>` : 'ok'}</td></tr>`)}
    </tbody></table></div>` : html`<${Empty} text="No schedules." />`}`;
}

function TaskTable({ tasks, selected, onSelect }) {
  if (!tasks || !tasks.length) return html`<${Empty} text="None." />`;
  return html`<div class="wrap"><table class="tasks"><thead><tr>${onSelect ? html`<th></th>` : null}<th>ID</th><th>Status</th><th>What</th><th class="hide-narrow">Group</th><th>Updated</th></tr></thead><tbody>
    ${tasks.map((t) => html`<tr data-task=${t.id}>
      ${onSelect ? html`<td><input type="checkbox" aria-label=${'select ' + t.id} checked=${selected.has(t.id)} onChange=${() => onSelect(t.id)} /></td>` : null}
      <td>${link('/tasks/' + t.id, String(t.id))}</td><td><${Status} s=${t.status} /></td><td>${t.display}</td>
      <td class="hide-narrow">${t.group}</td><td>${ago(t.updated_at)}</td></tr>`)}
  </tbody></table></div>`;
}

function Tasks() {
  const [filter, setFilter] = useState({ status: '', kind: '', schedule: '', group: '', label: '', since: '7d' });
  const [pages, setPages] = useState([null]);
  const [selected, setSelected] = useState(new Set());
  const [msg, setMsg] = useState(null);
  const before = pages[pages.length - 1];
  const q = new URLSearchParams({ limit: '50' });
  for (const k of ['status', 'kind', 'schedule', 'group', 'label', 'since']) if (filter[k]) q.set(k, filter[k]);
  if (before) q.set('before', String(before));
  const [d, e, reload] = useLive(() => api('/v1/tasks?' + q), [q.toString()], (n) => n.startsWith('task_'));
  const toggle = (id) => { const s = new Set(selected); s.has(id) ? s.delete(id) : s.add(id); setSelected(s); };
  const bulk = async (action) => {
    const ids = [...selected];
    const results = await Promise.allSettled(ids.map((id) => api(`/v1/tasks/${id}/${action}`, { method: 'POST', body: action === 'cancel' ? {} : undefined })));
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
    setMsg(`${action}: ${ids.length - failed.length} done${failed.length ? `, ${failed.length} refused (${failed[0]})` : ''}`);
    setSelected(new Set());
    reload();
  };
  const set = (k) => (ev) => { setFilter({ ...filter, [k]: ev.target.value }); setPages([null]); };
  const tasks = d ? d.tasks : [];
  return html`<h1>Tasks</h1>
    <div class="bar">
      <select aria-label="status" value=${filter.status} onChange=${set('status')}>
        <option value="">any status</option>
        ${['queued', 'waiting', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'].map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      <select aria-label="kind" value=${filter.kind} onChange=${set('kind')}>
        <option value="">any kind</option>${['command', 'agent', 'cli'].map((k) => html`<option value=${k}>${k}</option>`)}
      </select>
      <select aria-label="created" value=${filter.since} onChange=${set('since')}>
        ${[['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days'], ['', 'any time']].map(([v, t]) => html`<option value=${v}>${t}</option>`)}
      </select>
      <input aria-label="schedule" placeholder="schedule" value=${filter.schedule} onChange=${set('schedule')} />
      <input aria-label="group" placeholder="group" value=${filter.group} onChange=${set('group')} />
      <input aria-label="label" placeholder="label" value=${filter.label} onChange=${set('label')} />
      <button disabled=${!selected.size} onClick=${() => bulk('retry')}>Retry selected</button>
      <button disabled=${!selected.size} onClick=${() => bulk('cancel')}>Cancel selected</button>
    </div>
    ${msg ? html`<p class="muted" role="status">${msg}</p>` : null}<${Err} e=${e} />
    <${TaskTable} tasks=${tasks} selected=${selected} onSelect=${toggle} />
    <div class="bar">
      <button disabled=${pages.length < 2} onClick=${() => setPages(pages.slice(0, -1))}>Newer</button>
      <button disabled=${tasks.length < 50} onClick=${() => setPages(pages.concat([tasks[tasks.length - 1].id]))}>Older</button>
    </div>`;
}

function TaskPage({ id }) {
  const [d, e] = useLive(async () => {
    const task = await api(`/v1/tasks/${id}`);
    const isAgent = task.command && (task.command.agent || task.command.cli);
    const transcript = isAgent ? await api(`/v1/tasks/${id}/transcript`).catch(() => null) : null;
    const anomalies = await api(`/v1/anomalies?task=${id}&since=3650d`);
    return { task, transcript, anomalies };
  }, [id], (n, data) => !data.task_id || String(data.task_id) === String(id));
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  const t = d.task;
  const route = t.command && t.command.agent && t.command.agent.route;
  const act = async (what) => { try { await api(`/v1/tasks/${id}/${what}`, { method: 'POST', body: what === 'cancel' ? {} : undefined }); } catch (x) { alert(x.message); } };
  return html`<h1>Task ${t.id} <${Status} s=${t.status} /></h1><${Err} e=${e} />
    <p><code>${t.display}</code></p>
    <div class="bar"><button onClick=${() => act('retry')}>Retry</button><button onClick=${() => act('cancel')}>Cancel</button></div>
    <p class="muted">group ${t.group}; ${t.attempts} attempt(s); created ${when(t.created_at)}; ${t.origin ? JSON.stringify(t.origin) : 'submitted'}</p>
    ${t.state && t.state.reason ? html`<p class="bad">${t.state.reason}</p>` : null}
    <h2>Attempts</h2>
    ${t.runs && t.runs.length ? html`<div class="wrap"><table><thead><tr><th>#</th><th>Node</th><th>Started</th><th>Took</th><th>Outcome</th></tr></thead><tbody>
      ${t.runs.map((r) => html`<tr><td>${r.attempt}</td><td>${r.node}</td><td>${when(r.started_at)}</td><td>${r.duration_ms != null ? (r.duration_ms / 1000).toFixed(1) + 's' : 'running'}</td><td>${r.outcome ? r.outcome.outcome : '-'}</td></tr>`)}
    </tbody></table></div>` : html`<${Empty} text="Not started yet." />`}
    ${d.anomalies.anomalies.length ? html`<h2>Anomalies</h2><ul>${d.anomalies.anomalies.map((a) => html`<li>${a.summary}</li>`)}</ul>` : null}
    ${route ? html`<h2>Routing</h2><p>${route.decision}</p><div class="wrap"><table><thead><tr><th>Agent</th><th>Verdict</th><th>Running</th><th>$/Mtok</th></tr></thead><tbody>
      ${route.candidates.map((c) => html`<tr><td>${c.agent}</td><td>${c.verdict}</td><td>${c.running}${c.max_concurrent != null ? '/' + c.max_concurrent : ''}</td><td>${c.price_per_mtok || '-'}</td></tr>`)}
    </tbody></table></div>` : null}
    ${t.children && t.children.length ? html`<h2>Team</h2><${Children} kids=${t.children} />` : null}
    ${t.result ? html`<h2>Result</h2><pre>${t.result}</pre>` : null}
    ${t.git ? html`<h2>Worktree</h2><p>branch <code>${t.git.branch}</code>${t.git.commit ? html`, commit <code>${t.git.commit}</code>` : null}</p>` : null}
    ${t.usage ? html`<p class="muted">${t.usage.input_tokens + t.usage.output_tokens} tokens, ${usd(t.usage.cost_usd)}</p>` : null}
    <h2>Log</h2><${LiveLog} id=${t.id} attempts=${t.attempts} running=${t.status === 'running'} />
    ${d.transcript ? html`<h2>Transcript</h2><pre>${d.transcript.entries.map((x) => JSON.stringify(x)).join('\n')}</pre>` : null}`;
}

/// A team run's delegated tasks as a tree, each with what it waited for.
function Children({ kids }) {
  return html`<ul class="tree">${kids.map((c) => html`<li data-child=${c.id}><a href=${'#/tasks/' + c.id}>${c.id}</a> <${Status} s=${c.status} /> <code>${c.display}</code>
    ${c.depends_on.length ? html` <span class="muted">after ${c.depends_on.join(', ')}</span>` : null}
    ${c.children && c.children.length ? html`<${Children} kids=${c.children} />` : null}</li>`)}</ul>`;
}

/// The latest attempt's log; while it runs, streamed as it is written (`?follow=true`).
function LiveLog({ id, attempts, running }) {
  const [text, setText] = useState('');
  useEffect(() => {
    if (!attempts) { setText(''); return undefined; }
    const ctl = new AbortController();
    (async () => {
      const r = await fetch(`/v1/tasks/${id}/logs${running ? '?follow=true' : ''}`, { signal: ctl.signal });
      if (!r.ok || !r.body) { setText(`(the log is not available: HTTP ${r.status})`); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let acc = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        acc += dec.decode(value, { stream: true });
        // Keep the page light: the last 200,000 characters (the CLI has the whole log).
        if (acc.length > 200000) acc = acc.slice(-200000);
        setText(acc);
      }
    })().catch(() => {});
    return () => ctl.abort();
  }, [id, attempts, running]);
  return html`<pre id="log">${text || '(empty)'}</pre>`;
}

function Strip({ name }) {
  const [d] = useLive(() => api(`/v1/schedules/${encodeURIComponent(name)}/history?limit=20`), [name], (n) => n === 'task_changed');
  if (!d) return null;
  return html`<span class="strip">${d.history.slice().reverse().map((f) => html`<i class=${f.task_status || f.outcome} title=${`${when(f.scheduled_for)}: ${f.outcome}${f.task_status ? ', ' + f.task_status : ''}`}></i>`)}</span>`;
}

function Schedules() {
  const [d, e, reload] = useLive(() => api('/v1/schedules'), [], (n) => n.startsWith('task_'));
  const act = async (name, what) => { try { await api(`/v1/schedules/${encodeURIComponent(name)}/${what}`, { method: 'POST' }); reload(); } catch (x) { alert(x.message); } };
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  if (!d.schedules.length) return html`<h1>Schedules</h1><${Empty} text="No schedules: owl schedule add NAME --cron '0 2 * * *' -- COMMAND" />`;
  return html`<h1>Schedules</h1><${Err} e=${e} /><div class="wrap"><table><thead><tr><th>Name</th><th>When</th><th>State</th><th>Next</th><th>Last success</th><th>On time/late/missed/skipped</th><th>History</th><th></th></tr></thead><tbody>
    ${d.schedules.map((s) => html`<tr data-schedule=${s.name}><td>${s.name}</td><td>${s.describe}</td><td>${s.state}${s.overdue ? html` <span class="bad">OVERDUE</span>` : null}</td>
      <td>${ago(s.next_fire_at)}</td><td>${ago(s.last_success_at)}</td><td>${s.on_time}/${s.late}/${s.missed}/${s.skipped}</td><td><${Strip} name=${s.name} /></td>
      <td><button onClick=${() => act(s.name, 'run')}>Run now</button>
      ${s.state === 'paused' ? html`<button onClick=${() => act(s.name, 'resume')}>Resume</button>` : html`<button onClick=${() => act(s.name, 'pause')}>Pause</button>`}</td></tr>`)}
  </tbody></table></div>`;
}

function Triggers() {
  const [d, e, reload] = useLive(() => api('/v1/triggers'), []);
  const act = async (name, what) => { try { await api(`/v1/triggers/${encodeURIComponent(name)}/${what}`, { method: 'POST' }); reload(); } catch (x) { alert(x.message); } };
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  return html`<h1>Triggers</h1><${Err} e=${e} />${d.triggers.length ? html`<div class="wrap"><table><thead><tr><th>Name</th><th>On</th><th>Enabled</th><th></th></tr></thead><tbody>
    ${d.triggers.map((t) => html`<tr><td>${t.name}</td><td>${t.describe}</td><td>${t.enabled ? 'yes' : 'no'}</td>
      <td><button onClick=${() => act(t.name, t.enabled ? 'disable' : 'enable')}>${t.enabled ? 'Disable' : 'Enable'}</button></td></tr>`)}
  </tbody></table></div>` : html`<${Empty} text="No triggers." />`}`;
}

function Agents() {
  const [d, e, reload] = useLive(async () => {
    const [agents, approvals] = await Promise.all([api('/v1/agents'), api('/v1/approvals')]);
    return { agents, approvals };
  }, [], (n) => n.startsWith('approval_'));
  const decide = async (id, what) => {
    const body = what === 'deny' ? { reason: prompt('Why deny it?') || 'denied from the dashboard' } : {};
    try { await api(`/v1/approvals/${id}/${what}`, { method: 'POST', body }); reload(); } catch (x) { alert(x.message); }
  };
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  return html`<h1>Agents</h1><${Err} e=${e} />
    <h2>Waiting for approval</h2>
    ${d.approvals.approvals.length ? html`<div class="wrap"><table><thead><tr><th>ID</th><th>For</th><th>Agent</th><th>Tool</th><th>Call</th><th>Why</th><th></th></tr></thead><tbody>
      ${d.approvals.approvals.map((a) => html`<tr data-approval=${a.id}><td>${a.id}</td><td>${a.task_id ? link('/tasks/' + a.task_id, a.owner) : a.owner}</td><td>${a.agent}</td><td>${a.tool}</td>
        <td><code>${JSON.stringify(a.arguments)}</code></td><td>${a.reason}</td>
        <td><button class="primary" onClick=${() => decide(a.id, 'approve')}>Approve</button> <button onClick=${() => decide(a.id, 'deny')}>Deny</button></td></tr>`)}
    </tbody></table></div>` : html`<${Empty} text="Nothing waits for approval." />`}
    <h2>Configured</h2>
    ${d.agents.agents.length ? html`<div class="wrap"><table><thead><tr><th>Name</th><th>Provider</th><th>Model</th><th>Tools</th><th>Problem</th></tr></thead><tbody>
      ${d.agents.agents.map((a) => html`<tr><td>${a.name}</td><td>${a.provider}</td><td>${a.model}</td><td>${a.tools.join(', ')}</td><td class="bad">${a.problem || ''}</td></tr>`)}
    </tbody></table></div>` : html`<${Empty} text="No agents configured." />`}`;
}

function Chart({ title, labels, values, fmt }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!ref.current || !labels.length) return undefined;
    const xs = labels.map((l) => Date.parse(l + 'T00:00:00Z') / 1000);
    const plot = new uPlot({
      title, width: Math.min(ref.current.clientWidth || 600, 900), height: 220,
      series: [{}, { label: title, stroke: '#3b6ea5', fill: 'rgba(59,110,165,0.2)', value: (u, v) => (v == null ? '-' : fmt(v)) }],
      axes: [{}, { values: (u, vs) => vs.map(fmt) }],
    }, [xs, values], ref.current);
    return () => plot.destroy();
  }, [labels.join(), values.join()]);
  return html`<div class="card chart" ref=${ref}></div>`;
}

function Usage() {
  const [d, e] = useLive(async () => {
    const [day, model, agent, budgets] = await Promise.all([api('/v1/usage?by=day&since=30d'), api('/v1/usage?by=model&since=30d'), api('/v1/usage?by=agent&since=30d'), api('/v1/budgets')]);
    return { day, model, agent, budgets };
  }, []);
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  const rows = (r, price) => html`<div class="wrap"><table><thead><tr><th></th><th>Calls</th><th>Input</th><th>Output</th><th>Cost</th>${price ? html`<th>Price</th>` : null}</tr></thead><tbody>
    ${r.rows.map((x) => html`<tr><td>${x.key}</td><td>${x.calls}</td><td>${x.input_tokens}</td><td>${x.output_tokens}</td><td>${usd(x.cost_usd)}</td>${price ? html`<td>${x.price || '-'}</td>` : null}</tr>`)}</tbody></table></div>`;
  const limit = (b) => [b.usd != null ? usd(b.usd) : null, b.tokens != null ? b.tokens + ' tokens' : null,
    b.window_percent ? `window ${b.window_percent.day}% by day, ${b.window_percent.night}% by night` : null].filter(Boolean).join(' + ') + ' / ' + b.period;
  const budgets = d.budgets.budgets.length ? html`<div class="wrap"><table id="budgets"><thead><tr><th>Scope</th><th>Limit</th><th>Spent</th><th>Held</th><th>Resets</th><th>Waiting</th></tr></thead><tbody>
    ${d.budgets.budgets.map((b) => html`<tr><td>${b.scope}</td><td>${limit(b)}</td>
      <td class=${b.usd != null && b.spent_usd >= b.usd * b.warn_at ? 'bad' : ''}>${usd(b.spent_usd)}${b.tokens != null ? ', ' + b.spent_tokens + ' tokens' : ''}</td>
      <td>${usd(b.reserved_usd)}</td><td>${b.resets_at && b.resets_at < '9999' ? ago(b.resets_at) : 'never'}</td>
      <td>${b.waiting.map((id) => html`${link('/tasks/' + id, String(id))} `)}</td></tr>`)}</tbody></table></div>
    ${d.budgets.budgets.filter((b) => b.note).map((b) => html`<p class="muted">${b.scope}: ${b.note}</p>`)}` : html`<${Empty} text="No budgets: add [budgets.global] to the config, or owl budget set." />`;
  const labels = d.day.rows.map((r) => r.key);
  return html`<h1>Usage, last 30 days</h1><${Err} e=${e} />
    ${labels.length ? html`<${Chart} title="Cost per day (USD)" labels=${labels} values=${d.day.rows.map((r) => r.cost_usd)} fmt=${usd} />
      <${Chart} title="Tokens per day" labels=${labels} values=${d.day.rows.map((r) => r.input_tokens + r.output_tokens)} fmt=${(v) => String(Math.round(v))} />` : html`<${Empty} text="No model calls yet." />`}
    <h2>Budgets</h2>${budgets}
    <h2>By model</h2>${rows(d.model, true)}<h2>By agent</h2>${rows(d.agent)}<p class="muted">Total ${usd(d.day.total.cost_usd)}.</p>`;
}

function Memory() {
  const [text, setText] = useState('');
  const [res, setRes] = useState(null);
  const [e, setE] = useState(null);
  const [recent] = useLive(() => api('/v1/memory?limit=20'), []);
  const search = async (ev) => {
    ev.preventDefault();
    try { setRes(await api('/v1/memory/search', { method: 'POST', body: { text } })); setE(null); } catch (x) { setE(x.message); }
  };
  const items = res ? res.hits.map((h2) => h2.item) : recent ? recent.items : [];
  return html`<h1>Memory</h1>
    <form class="bar" onSubmit=${search}><input aria-label="search memory" placeholder="search memory" value=${text} onInput=${(ev) => setText(ev.target.value)} /><button class="primary">Search</button></form>
    <${Err} e=${e} />${res && res.note ? html`<p class="muted">${res.note}</p>` : null}
    ${items.length ? html`<div class="wrap"><table><thead><tr><th>ID</th><th>Kind</th><th>Text</th></tr></thead><tbody>
      ${items.map((m) => html`<tr><td>${m.id}</td><td>${m.kind}</td><td>${m.text}</td></tr>`)}</tbody></table></div>` : html`<${Empty} text="No memories." />`}`;
}

function Health() {
  const [d, e] = useLive(async () => {
    const get = async (p) => { const r = await fetch(p); return r.json(); };
    return { live: await get('/v1/health/live'), ready: await get('/v1/health/ready') };
  }, []);
  if (!d) return html`<${Err} e=${e} /><p class="muted">Loading...</p>`;
  const checks = (v) => html`<div class="wrap"><table><thead><tr><th>Check</th><th>OK</th><th>Why</th></tr></thead><tbody>
    ${v.checks.map((c) => html`<tr><td>${c.name}</td><td class=${c.ok ? 'ok' : 'bad'}>${c.ok ? 'ok' : 'FAIL'}</td><td>${c.reason || ''}</td></tr>`)}</tbody></table></div>`;
  return html`<h1>Health</h1><h2>Liveness: <span class=${d.live.status === 'ok' ? 'ok' : 'bad'}>${d.live.status}</span></h2>${checks(d.live)}
    <h2>Readiness: <span class=${d.ready.status === 'ok' ? 'ok' : 'bad'}>${d.ready.status}</span></h2>${checks(d.ready)}`;
}

function Reports() {
  const [d, e] = useLive(async () => {
    const [status, anomalies] = await Promise.all([api('/v1/status'), api('/v1/anomalies?since=7d&limit=50')]);
    return { today: status.report_date, anomalies: anomalies.anomalies };
  }, [], (n) => n === 'anomaly_detected');
  // The last 7 days in the reports' time zone, counted back from the daemon's today.
  const start = d ? Date.parse(d.today + 'T12:00:00Z') : Date.now();
  const days = [...Array(7).keys()].map((i) => new Date(start - i * 86400000).toISOString().slice(0, 10));
  return html`<h1>Reports</h1>
    <div class="wrap"><table><thead><tr><th>Day</th><th>Open</th></tr></thead><tbody>
      ${days.map((day) => html`<tr><td>${day}</td><td><a class="report" target="_blank" rel="noopener" href=${`/v1/reports/daily?date=${day}&format=html`}>HTML</a> · <a href=${`/v1/reports/daily?date=${day}&format=md`} target="_blank" rel="noopener">Markdown</a></td></tr>`)}
    </tbody></table></div>
    <p><a target="_blank" rel="noopener" href="/v1/reports/performance?since=7d&format=html">The last 7 days</a> · <a target="_blank" rel="noopener" href="/v1/reports/performance?since=30d&format=html">30 days</a></p>
    <h2>Anomalies, last 7 days</h2><${Err} e=${e} />
    ${d && d.anomalies.length ? html`<ul>${d.anomalies.map((a) => html`<li>${link('/tasks/' + a.task_id, 'task ' + a.task_id)}: ${a.summary}</li>`)}</ul>` : html`<${Empty} text="None." />`}`;
}

const PAGES = [['/', 'Overview', Overview], ['/tasks', 'Tasks', Tasks], ['/schedules', 'Schedules', Schedules], ['/triggers', 'Triggers', Triggers],
  ['/agents', 'Agents', Agents], ['/usage', 'Usage', Usage], ['/memory', 'Memory', Memory], ['/health', 'Health', Health], ['/reports', 'Reports', Reports]];

function App() {
  const [route, setRoute] = useState(location.hash.slice(1) || '/');
  useEffect(() => {
    const f = () => setRoute(location.hash.slice(1) || '/');
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  const task = route.match(/^\/tasks\/(\d+)$/);
  const page = PAGES.find(([p]) => p === route) || PAGES[0];
  const Page = page[2];
  const signout = async () => { await fetch('/ui/signout', { method: 'POST', headers: { 'x-csrf-token': csrf || '' } }); location.reload(); };
  return html`<header><strong>owl</strong><nav>${PAGES.map(([p, name]) => html`<a href=${'#' + p} class=${(task ? '/tasks' : page[0]) === p ? 'on' : ''}>${name}</a>`)}</nav>
      <button onClick=${signout}>Sign out</button></header>
    <main>${task ? html`<${TaskPage} id=${task[1]} />` : html`<${Page} />`}</main>`;
}

api('/ui/session').then((s) => { csrf = s.csrf; }).catch(() => {});
connect();
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
