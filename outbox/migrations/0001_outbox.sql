-- headway outbox, version 1. {{table}} is replaced by the configured table
-- name (default headway_outbox).
CREATE TABLE IF NOT EXISTS {{table}} (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text        NOT NULL UNIQUE,
    stream          text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version = 2),
    -- brand_id is the envelope's brand; owner_brand_id the brand of the row
    -- that owns the event. They must agree (ADR-009), and an owner table can
    -- tie owner_brand_id to its own row with a composite foreign key.
    brand_id        bigint      NOT NULL CHECK (brand_id > 0),
    owner_brand_id  bigint      NOT NULL,
    aggregate_id    text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    payload         json        NOT NULL,
    traceparent     text,
    tracestate      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    CONSTRAINT {{table}}_envelope_brand_is_owner_brand CHECK (brand_id = owner_brand_id)
);
CREATE INDEX IF NOT EXISTS {{table}}_unpublished ON {{table}} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{table}}_published_at ON {{table}} (published_at) WHERE published_at IS NOT NULL;
