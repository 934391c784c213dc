-- The fan-out marks each event it has written the deliveries of; the
-- reconciler looks for published events without the mark. Events published
-- before this migration count as fanned out.
ALTER TABLE outbox_events ADD COLUMN fanned_out_at timestamptz;
UPDATE outbox_events SET fanned_out_at = published_at WHERE published_at IS NOT NULL;
CREATE INDEX outbox_events_not_fanned_out ON outbox_events (published_at)
    WHERE fanned_out_at IS NULL AND published_at IS NOT NULL;
