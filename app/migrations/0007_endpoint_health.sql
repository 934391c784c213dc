-- failing_since starts an endpoint's current run of failed attempts; a
-- success clears it. An endpoint failing for longer than
-- HOOKD_ENDPOINT_DISABLE_AFTER is disabled.
ALTER TABLE endpoints ADD COLUMN failing_since timestamptz;
