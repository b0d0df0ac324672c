-- headway outbox for SQLite, version 1. {{table}} is replaced by the
-- configured table name. Times are Unix nanoseconds (UTC).
CREATE TABLE IF NOT EXISTS {{table}} (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    stream          TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version = 2),
    -- brand_id is the envelope's brand; owner_brand_id the brand of the row
    -- that owns the event. They must agree (ADR-009).
    brand_id        INTEGER NOT NULL CHECK (brand_id > 0),
    owner_brand_id  INTEGER NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    occurred_at     INTEGER NOT NULL,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      INTEGER NOT NULL,
    published_at    INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT {{table}}_envelope_brand_is_owner_brand CHECK (brand_id = owner_brand_id)
);
CREATE INDEX IF NOT EXISTS {{table}}_unpublished ON {{table}} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{table}}_published_at ON {{table}} (published_at) WHERE published_at IS NOT NULL;
