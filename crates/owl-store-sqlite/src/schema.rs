//! The schema, as embedded append-only migrations. Never edit a shipped migration: add one.

use owl_store::StoreError;
use rusqlite::Connection;

/// (version, name, SQL), applied in order, each in its own transaction.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tasks, dependencies, runs and groups",
        r#"
CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    command          TEXT    NOT NULL,           -- JSON of owl_core::Command
    env              TEXT    NOT NULL,           -- JSON object
    cwd              TEXT,
    priority         INTEGER NOT NULL,
    grp              TEXT    NOT NULL,
    run_at           INTEGER,                    -- as requested; NULL = as soon as possible
    timeout_ms       INTEGER,
    max_attempts     INTEGER NOT NULL,
    idempotency_key  TEXT    UNIQUE,
    labels           TEXT    NOT NULL,           -- JSON array
    status           TEXT    NOT NULL,
    due_at           INTEGER NOT NULL,           -- a waiting task is due at this instant
    deps_pending     INTEGER NOT NULL DEFAULT 0, -- dependencies not yet succeeded
    attempts         INTEGER NOT NULL DEFAULT 0, -- claims so far: the fencing token
    failures         INTEGER NOT NULL DEFAULT 0,
    interruptions    INTEGER NOT NULL DEFAULT 0, -- crash rescues
    node             TEXT,
    started_at       INTEGER,
    lease_until      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    finished_at      INTEGER,
    exit_code        INTEGER,
    signal           INTEGER,
    reason           TEXT,
    blocked_by       INTEGER                     -- the dependency whose failure failed this task
);
CREATE INDEX tasks_ready   ON tasks(status, priority DESC, id);
CREATE INDEX tasks_due     ON tasks(status, deps_pending, due_at);
CREATE INDEX tasks_group   ON tasks(grp, status);
CREATE INDEX tasks_lease   ON tasks(status, lease_until);
CREATE INDEX tasks_blocked ON tasks(blocked_by) WHERE blocked_by IS NOT NULL;

CREATE TABLE task_deps (
    task_id INTEGER NOT NULL,
    dep_id  INTEGER NOT NULL,
    PRIMARY KEY (task_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_by_dep ON task_deps(dep_id, task_id);

CREATE TABLE runs (
    task_id    INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    node       TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    exit_code  INTEGER,
    signal     INTEGER,
    outcome    TEXT,                             -- JSON of owl_core::RunOutcome; NULL while running
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

CREATE TABLE groups (
    name     TEXT PRIMARY KEY,
    parallel INTEGER
);
"#,
    ),
    (
        2,
        "schedules and their fires",
        r#"
CREATE TABLE schedules (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    spec          TEXT    NOT NULL,                 -- JSON of owl_core::schedule::ScheduleSpec
    state         TEXT    NOT NULL,                 -- active | paused | finished
    next_fire_at  INTEGER,
    pending_slot  INTEGER,
    last_task_id  INTEGER,
    last_fire_at  INTEGER,
    fired         INTEGER NOT NULL DEFAULT 0,
    missed        INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    late          INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules(state, next_fire_at);
CREATE INDEX schedules_pending ON schedules(pending_slot) WHERE pending_slot IS NOT NULL;

-- One row per slot: the primary key is what makes a slot fire at most once.
CREATE TABLE schedule_fires (
    schedule_id   INTEGER NOT NULL,
    scheduled_for INTEGER NOT NULL,
    fired_at      INTEGER NOT NULL,
    task_id       INTEGER,
    outcome       TEXT    NOT NULL,                 -- fired | manual | missed | skipped | queued
    reason        TEXT,
    PRIMARY KEY (schedule_id, scheduled_for)
) WITHOUT ROWID;
CREATE INDEX schedule_fires_by_time ON schedule_fires(fired_at);
"#,
    ),
    (
        3,
        "triggers, their fires, task inputs",
        r#"
ALTER TABLE tasks ADD COLUMN inputs TEXT;        -- JSON array of owl_core::InputFile; NULL = none

-- Every transition of a task to a final status, in commit order (the single writer assigns
-- seq), so consumers such as task-event triggers can follow completions with a cursor that
-- never skips a task committed a moment late.
CREATE TABLE task_finishes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX task_finishes_by_time ON task_finishes(at);

CREATE TABLE triggers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    spec          TEXT    NOT NULL,                 -- JSON of owl_core::trigger::TriggerSpec
    enabled       INTEGER NOT NULL DEFAULT 1,
    fired         INTEGER NOT NULL DEFAULT 0,
    refused       INTEGER NOT NULL DEFAULT 0,
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- One row per (trigger, source event): a source fires a trigger at most once.
CREATE TABLE trigger_fires (
    trigger_id  INTEGER NOT NULL,
    source      TEXT    NOT NULL,                   -- task:<id> or the webhook delivery id
    at          INTEGER NOT NULL,
    task_id     INTEGER,
    outcome     TEXT    NOT NULL,                   -- fired | rate_limited | refused
    reason      TEXT,
    PRIMARY KEY (trigger_id, source)
) WITHOUT ROWID;
CREATE INDEX trigger_fires_by_time ON trigger_fires(trigger_id, at);

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        4,
        "agent transcripts, results, usage, approvals and chats",
        r#"
CREATE TABLE transcript (
    owner    TEXT    NOT NULL,                      -- task:<id> or chat:<id>
    seq      INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    body     TEXT    NOT NULL,                      -- JSON object
    PRIMARY KEY (owner, seq)
) WITHOUT ROWID;

CREATE TABLE task_results (
    task_id  INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    result   TEXT    NOT NULL
);

CREATE TABLE usage (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    owner     TEXT    NOT NULL,
    agent     TEXT    NOT NULL,
    provider  TEXT    NOT NULL,
    model     TEXT    NOT NULL,
    input     INTEGER NOT NULL,
    output    INTEGER NOT NULL,
    cached    INTEGER NOT NULL,
    cost_usd  REAL    NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX usage_by_time ON usage(at);

CREATE TABLE approvals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    owner           TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    call_id         TEXT    NOT NULL,
    tool            TEXT    NOT NULL,
    arguments       TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    status          TEXT    NOT NULL,               -- pending | approved | denied | expired | used
    decision_reason TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    UNIQUE (owner, call_id)
);
CREATE INDEX approvals_pending ON approvals(status, expires_at);

CREATE TABLE chats (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent       TEXT    NOT NULL,
    title       TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
"#,
    ),
    (
        5,
        "a task's sandbox choice",
        r#"
ALTER TABLE tasks ADD COLUMN sandbox TEXT;       -- JSON of owl_core::SandboxRequest; NULL = the default
"#,
    ),
    (
        6,
        "repository tasks: the requested repository and what owl did in git",
        r#"
ALTER TABLE tasks ADD COLUMN repo TEXT;          -- JSON of owl_core::RepoRequest; NULL = no repository
CREATE TABLE task_git (
    task_id     INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    record      TEXT    NOT NULL,                -- JSON of owl_core::coding::GitRecord
    removed     INTEGER NOT NULL DEFAULT 0       -- the worktree is gone (retention)
);
CREATE INDEX usage_by_owner ON usage(owner);
"#,
    ),
    (
        7,
        "a task's origin and a schedule's maker as typed data, not owl:* labels",
        r#"
ALTER TABLE tasks ADD COLUMN origin TEXT;        -- JSON of owl_core::task::Origin; NULL = a person or a client
-- Agent subtasks recorded their parent and depth in labels (owl:parent=task:12, owl:depth=1).
UPDATE tasks SET origin = (
    SELECT json_object(
        'kind', 'agent',
        'parent', json_object(
            'kind', substr(p.value, 12, instr(substr(p.value, 12), ':') - 1),
            'id', CAST(substr(p.value, 12 + instr(substr(p.value, 12), ':')) AS INTEGER)),
        'depth', CAST(substr(d.value, 11) AS INTEGER))
    FROM json_each(tasks.labels) AS p, json_each(tasks.labels) AS d
    WHERE p.value LIKE 'owl:parent=%' AND d.value LIKE 'owl:depth=%')
WHERE EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE value LIKE 'owl:parent=%');
-- Schedules an agent made carried owl:created-by=task:12 in their template's labels.
UPDATE schedules SET spec = json_set(spec, '$.created_by', (
    SELECT json_object(
        'kind', substr(c.value, 16, instr(substr(c.value, 16), ':') - 1),
        'id', CAST(substr(c.value, 16 + instr(substr(c.value, 16), ':')) AS INTEGER))
    FROM json_each(json_extract(schedules.spec, '$.template.labels')) AS c
    WHERE c.value LIKE 'owl:created-by=%'))
WHERE EXISTS (SELECT 1 FROM json_each(json_extract(schedules.spec, '$.template.labels')) WHERE value LIKE 'owl:created-by=%');
UPDATE tasks SET labels = (SELECT json_group_array(value) FROM json_each(tasks.labels) WHERE value NOT LIKE 'owl:%')
    WHERE EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE value LIKE 'owl:%');
UPDATE schedules SET spec = json_set(spec, '$.template.labels',
        (SELECT json_group_array(value) FROM json_each(json_extract(schedules.spec, '$.template.labels')) WHERE value NOT LIKE 'owl:%'))
    WHERE EXISTS (SELECT 1 FROM json_each(json_extract(schedules.spec, '$.template.labels')) WHERE value LIKE 'owl:%');
"#,
    ),
    (
        8,
        "the nodes that use this store and their last reports",
        r#"
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    version    TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    workers    INTEGER NOT NULL
);
"#,
    ),
    (
        9,
        "each schedule's last success",
        r#"
ALTER TABLE schedules ADD COLUMN last_success_at INTEGER;
ALTER TABLE schedules ADD COLUMN last_success_ms INTEGER;
UPDATE schedules SET
    last_success_at = (SELECT max(t.finished_at) FROM schedule_fires f JOIN tasks t ON t.id = f.task_id
                       WHERE f.schedule_id = schedules.id AND t.status = 'succeeded'),
    last_success_ms = (SELECT t.finished_at - t.started_at FROM schedule_fires f JOIN tasks t ON t.id = f.task_id
                       WHERE f.schedule_id = schedules.id AND t.status = 'succeeded' ORDER BY t.finished_at DESC LIMIT 1);
"#,
    ),
    (
        10,
        "run samples for baselines and reports, and the anomalies found",
        r#"
CREATE TABLE run_samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    schedule    TEXT,
    agent       TEXT,
    succeeded   INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    cost_usd    REAL    NOT NULL,
    UNIQUE (task_id, attempt)
);
CREATE INDEX run_samples_by_kind ON run_samples (kind, id);
CREATE INDEX run_samples_by_schedule ON run_samples (schedule, id) WHERE schedule IS NOT NULL;
CREATE INDEX run_samples_by_agent ON run_samples (agent, id) WHERE agent IS NOT NULL;
CREATE INDEX run_samples_by_time ON run_samples (at);
CREATE TABLE anomalies (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    task_id  INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    scope    TEXT    NOT NULL,
    subject  TEXT    NOT NULL,
    metric   TEXT    NOT NULL,
    value    REAL    NOT NULL,
    median   REAL    NOT NULL,
    mad      REAL    NOT NULL,
    z        REAL    NOT NULL,
    samples  INTEGER NOT NULL,
    summary  TEXT    NOT NULL,
    UNIQUE (task_id, attempt, metric)
);
CREATE INDEX anomalies_by_time ON anomalies (at);
"#,
    ),
    (
        11,
        "when each schedule was last resumed",
        r#"
ALTER TABLE schedules ADD COLUMN active_since INTEGER;
"#,
    ),
    (
        12,
        "notification channels, rules and the outbox",
        r#"
CREATE TABLE notify_channels (
    name       TEXT PRIMARY KEY,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    paused     TEXT,
    failures   INTEGER NOT NULL DEFAULT 0,
    last_ok_at INTEGER,
    last_error TEXT
);
CREATE TABLE notify_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE notify_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT    NOT NULL,
    rule_id    INTEGER,
    key        TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    task_id    INTEGER,
    notice     TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    batch      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    log        TEXT    NOT NULL DEFAULT '[]',
    UNIQUE (channel, key)
);
CREATE INDEX notify_outbox_due ON notify_outbox (next_at) WHERE status IN ('pending', 'sending');
CREATE INDEX notify_outbox_batch ON notify_outbox (batch) WHERE batch IS NOT NULL;
CREATE INDEX notify_outbox_rule ON notify_outbox (rule_id, channel, created_at);
CREATE INDEX notify_outbox_done ON notify_outbox (updated_at) WHERE status IN ('delivered', 'dead');
"#,
    ),
    (
        13,
        "the budget ledger, and the price each usage row was charged at",
        r#"
CREATE TABLE budget_ledger (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT    NOT NULL,
    scope   TEXT    NOT NULL,
    task_id INTEGER,
    usd     REAL    NOT NULL,
    tokens  INTEGER NOT NULL,
    open    INTEGER NOT NULL,           -- 1 reserved by work in flight, 0 settled
    at      INTEGER NOT NULL,
    UNIQUE (key, scope)
);
CREATE INDEX budget_ledger_scope ON budget_ledger (scope, at);
CREATE INDEX budget_ledger_task ON budget_ledger (task_id) WHERE open = 1;
ALTER TABLE usage ADD COLUMN price TEXT NOT NULL DEFAULT '';
"#,
    ),
    (
        14,
        "messages between agents with their deliveries, and agents' state",
        r#"
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,   -- one message per send, however often it is replayed
    thread      TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    sender_task INTEGER,
    recipient   TEXT    NOT NULL,          -- as addressed: agent:NAME, task:ID or all
    kind        TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    reply_to    INTEGER,
    metadata    TEXT    NOT NULL,          -- JSON object
    attachments TEXT    NOT NULL,          -- JSON array
    created_at  INTEGER NOT NULL
);
CREATE INDEX messages_thread ON messages (thread, id);
CREATE TABLE message_deliveries (
    message_id   INTEGER NOT NULL,
    recipient    TEXT    NOT NULL,         -- agent:NAME or task:ID
    claim        TEXT,                     -- the read that took it
    delivered_at INTEGER,
    acked_at     INTEGER,
    PRIMARY KEY (message_id, recipient)
);
CREATE INDEX message_deliveries_unread ON message_deliveries (recipient, message_id) WHERE claim IS NULL;
CREATE INDEX message_deliveries_claim ON message_deliveries (claim);
CREATE TABLE agent_state (
    agent      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent, key)
);
"#,
    ),
];

pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let be = crate::backend;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .map_err(be)?;
    let current: i64 = conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(be)?;
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StoreError::Backend(format!(
            "the database is at schema version {current}, written by a newer owl (this one knows up to {newest}); upgrade owl or use another --data-dir"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let now = owl_core::Timestamp::from_system(std::time::SystemTime::now()).millis();
        conn.execute_batch("BEGIN IMMEDIATE").map_err(be)?;
        let applied = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, now],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT").map_err(be)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Backend(format!("migration {version} ({name}) failed: {e}")));
            }
        }
    }
    Ok(())
}
