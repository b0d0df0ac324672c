-- Claims lease their rows instead of holding SQLite's write lock while the
-- relay appends them to Redis: a claim sets lease_token and lease_until in
-- one short statement, and the rows are claimable again once the lease has
-- run out (a relay that died) or it was released.
ALTER TABLE {{table}} ADD COLUMN lease_token TEXT;
ALTER TABLE {{table}} ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
