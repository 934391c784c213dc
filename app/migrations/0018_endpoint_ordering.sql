-- An endpoint receives its deliveries in any order, several at once
-- (unordered), or one at a time in the order their events were committed
-- (fifo). It is set at creation and never changes: deliveries under way
-- keep the order they were written for.
ALTER TABLE endpoints
    ADD COLUMN ordering text NOT NULL DEFAULT 'unordered'
        CONSTRAINT endpoints_ordering CHECK (ordering IN ('unordered', 'fifo'));
