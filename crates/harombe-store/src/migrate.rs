//! The schema, as numbered migrations per dialect. Both dialects describe the same tables:
//!
//! - `audit_events`: one row per event: `seq` (chain position), `id`, columns derived
//!   from the event for filtering, `body` (the canonical encoding the hash covers) and
//!   `hash`. Indexed: id, agent, kind, target and time — every index costs write
//!   throughput, so filters on session, outcome, verdict and threat level narrow within
//!   those (or walk `seq` backwards) instead of having their own.
//! - `audit_head`: the last seq and hash, advanced in every commit (detects a cut tail).
//! - `audit_checkpoints`: where verification starts after retention.
//! - `audit_hourly`: events per hour and kind, kept up to date in every commit.
//! - `consumer_cursors`: committed positions of named consumers (SIEM sinks, alerting).
//! - `approvals` (version 2): held tool calls waiting for a human. Times are microseconds
//!   since the epoch (like `audit_events.ts`); `arguments` and `reasons` are JSON text
//!   (not `jsonb`, which refuses `\u0000` inside an agent's string arguments). Indexed on
//!   `(state, created)` for the pending list.
//!
//! A migration is applied once, in a transaction, and recorded in `schema_migrations`.

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        ts INTEGER NOT NULL,
        agent TEXT,
        session TEXT,
        kind TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        decision TEXT,
        threat INTEGER,
        body BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_events_agent ON audit_events (agent, seq);
    CREATE INDEX audit_events_kind ON audit_events (kind, seq);
    CREATE INDEX audit_events_target ON audit_events (target, seq);
    CREATE INDEX audit_events_ts ON audit_events (ts);
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
    CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        prev_hash BLOB NOT NULL,
        deleted INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE audit_hourly (
        hour INTEGER NOT NULL,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, kind)
    );
    CREATE TABLE consumer_cursors (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    ),
    (
        2,
        "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        session TEXT,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        binding TEXT NOT NULL,
        reasons TEXT NOT NULL,
        threat_level TEXT,
        risk REAL,
        created INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
        decided_by TEXT,
        decided_at INTEGER,
        reason TEXT
    );
    CREATE INDEX approvals_state ON approvals (state, created);",
    ),
];

pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (
    1,
    "CREATE TABLE audit_events (
        seq BIGINT PRIMARY KEY,
        id UUID NOT NULL UNIQUE,
        ts BIGINT NOT NULL,
        agent TEXT,
        session TEXT,
        kind TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        decision TEXT,
        threat SMALLINT,
        body BYTEA NOT NULL,
        hash BYTEA NOT NULL
    );
    CREATE INDEX audit_events_agent ON audit_events (agent, seq);
    CREATE INDEX audit_events_kind ON audit_events (kind, seq);
    CREATE INDEX audit_events_target ON audit_events (target, seq);
    CREATE INDEX audit_events_ts ON audit_events (ts);
    CREATE TABLE audit_head (
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE audit_checkpoints (
        seq BIGINT PRIMARY KEY,
        prev_hash BYTEA NOT NULL,
        deleted BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE audit_hourly (
        hour BIGINT NOT NULL,
        kind TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (hour, kind)
    );
    CREATE TABLE consumer_cursors (
        name TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );",
    ),
    (
        2,
        "CREATE TABLE approvals (
        id UUID PRIMARY KEY,
        agent TEXT NOT NULL,
        session TEXT,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        binding TEXT NOT NULL,
        reasons TEXT NOT NULL,
        threat_level TEXT,
        risk DOUBLE PRECISION,
        created BIGINT NOT NULL,
        deadline BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
        decided_by TEXT,
        decided_at BIGINT,
        reason TEXT
    );
    CREATE INDEX approvals_state ON approvals (state, created);",
    ),
];
