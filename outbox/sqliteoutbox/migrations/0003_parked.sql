-- Parked rows (issue #14), as in PostgreSQL: a row the relay can never
-- append gets parked_at and park_reason and leaves the unpublished index,
-- so it is never claimed again and is not backlog, until it is unparked
-- (both back to NULL) or deleted.
ALTER TABLE {{table}} ADD COLUMN parked_at INTEGER;
ALTER TABLE {{table}} ADD COLUMN park_reason TEXT;
DROP INDEX IF EXISTS {{table}}_unpublished;
CREATE INDEX IF NOT EXISTS {{table}}_unpublished ON {{table}} (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS {{table}}_parked ON {{table}} (id) WHERE parked_at IS NOT NULL;
