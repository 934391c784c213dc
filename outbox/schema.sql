-- outbox_events holds every event a producer committed. The relay hands
-- unpublished rows to a Publisher in seq order and stamps published_at.
CREATE TABLE outbox_events (
    seq          bigint      GENERATED ALWAYS AS IDENTITY,
    id           text        PRIMARY KEY,
    tenant       text        NOT NULL,
    topic        text        NOT NULL,
    payload      json        NOT NULL, -- json, not jsonb: keeps the producer's text (key order, \u0000)
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);

CREATE INDEX outbox_events_unpublished ON outbox_events (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_tenant_created ON outbox_events (tenant, created_at);

-- One notification per inserting statement, naming the schema, wakes its relays;
-- Postgres delivers it on commit only and folds duplicates within a transaction.
CREATE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();
