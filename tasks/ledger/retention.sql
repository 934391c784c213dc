-- Retention deletes attempts by age. Attempts are appended in time order,
-- so a BRIN index finds the old ones at a few pages' cost, and costs the
-- hot path next to nothing.
CREATE INDEX delivery_attempts_attempted_brin ON delivery_attempts USING brin (attempted_at);
