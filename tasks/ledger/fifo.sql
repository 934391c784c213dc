-- FIFO endpoints receive their deliveries in the order of their events'
-- outbox sequence: seq, copied from the event when the fan-out writes the
-- delivery of a FIFO endpoint, NULL for every other delivery (and for a
-- FIFO dead letter retried: a replay goes on its own). The head of an
-- endpoint's queue is its pending delivery of lowest seq.
ALTER TABLE deliveries ADD COLUMN seq bigint;
CREATE INDEX deliveries_fifo ON deliveries (endpoint_id, seq)
    WHERE status = 'pending' AND seq IS NOT NULL;

-- A head waits while an earlier event of its app is not fanned out yet,
-- since that event may owe the endpoint a delivery ahead of it.
CREATE INDEX outbox_events_not_fanned_out_seq ON outbox_events (tenant, seq)
    WHERE fanned_out_at IS NULL;
