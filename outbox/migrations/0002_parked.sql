-- headway outbox, version 2: parked rows (issue #14). The relay parks a row
-- it can never append (it does not encode: over the size limit, written by
-- an older version or by hand): parked_at and park_reason are set, and the
-- row leaves the claimable index, so it is never claimed again and is not
-- backlog, until an operator unparks it (both back to NULL) or deletes it.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS parked_at timestamptz;
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS park_reason text;
-- The claim and the backlog count of this version read this index.
CREATE INDEX IF NOT EXISTS {{table}}_claimable ON {{table}} (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS {{table}}_parked ON {{table}} (id) WHERE parked_at IS NOT NULL;
-- {{table}}_unpublished (WHERE published_at IS NULL) stays: relays of the
-- previous version still run during a rolling upgrade, and their claims and
-- counts cannot use the index above (its predicate is not implied by
-- theirs), so without it they would scan the published rows. A later
-- migration drops it, once no such relay can be running.
