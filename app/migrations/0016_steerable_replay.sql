-- Apps addressed by the integrator's own ID, and replays people can steer.

-- uid: the integrator's own ID of an application (1 to 64 of
-- [A-Za-z0-9._-], never shaped like a hookd app ID), unique; NULL for none.
ALTER TABLE applications ADD COLUMN uid text UNIQUE
    CHECK (uid ~ '^[A-Za-z0-9._-]{1,64}$' AND uid !~ '^app_[0-9a-z]{26}$' AND uid !~ '^\.+$');

-- The delivery engine's part of this version, tasks/ledger's replay.sql, runs
-- after this file (see migrations in migrate.go).
