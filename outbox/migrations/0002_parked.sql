-- headway outbox, version 2: parked rows (issue #14). The relay parks a row
-- it can never append (it does not encode: over the size limit, written by
-- an older version or by hand): parked_at and park_reason are set, and the
-- row leaves the unpublished index, so it is never claimed again and is not
-- backlog, until an operator unparks it (both back to NULL) or deletes it.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS parked_at timestamptz;
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS park_reason text;
DROP INDEX IF EXISTS {{table}}_unpublished;
CREATE INDEX IF NOT EXISTS {{table}}_unpublished ON {{table}} (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS {{table}}_parked ON {{table}} (id) WHERE parked_at IS NOT NULL;
