-- The /v1 platform API: application and endpoint settings, event types,
-- idempotent event ingestion, API keys, and the indexes its lists page on.

ALTER TABLE applications ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';

-- filter: a JSON filter on the event payload (NULL matches all), kept as
-- json so that the validated bytes are stored unchanged.
-- headers: custom headers sent with each delivery.
-- rate_limit: deliveries per second, NULL for none.
ALTER TABLE endpoints
    ADD COLUMN filter          json,
    ADD COLUMN headers         jsonb   NOT NULL DEFAULT '{}',
    ADD COLUMN rate_limit      integer CHECK (rate_limit > 0),
    ADD COLUMN disabled_reason text,
    ADD COLUMN disabled_at     timestamptz,
    ADD COLUMN metadata        jsonb   NOT NULL DEFAULT '{}';

DROP INDEX endpoints_app;
CREATE INDEX endpoints_app ON endpoints (app_id, id);

-- Event types document the events an app may publish. A schema, when set,
-- validates every event of the type published through the API.
CREATE TABLE event_types (
    name        text        PRIMARY KEY,
    description text        NOT NULL DEFAULT '',
    schema      jsonb,
    archived    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

INSERT INTO event_types (name, description, schema) VALUES (
    'link.clicked',
    'A short link was visited. Published by the link shortener in the transaction that records the click.',
    '{
        "type": "object",
        "required": ["link_id", "code", "url", "clicked_at"],
        "properties": {
            "link_id":    {"type": "string", "description": "ID of the link (lnk_...)."},
            "code":       {"type": "string", "description": "The short code that was visited."},
            "url":        {"type": "string", "format": "uri", "description": "Where the link redirects."},
            "clicked_at": {"type": "string", "format": "date-time"},
            "user_agent": {"type": "string"},
            "referer":    {"type": "string"}
        }
    }'
);

-- Idempotency keys of events published through the API: the same key
-- within 24 hours returns the original event.
CREATE TABLE event_idempotency (
    app_id       text        NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    key          text        NOT NULL,
    event_id     text        NOT NULL,
    request_hash bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (app_id, key)
);

CREATE INDEX event_idempotency_created ON event_idempotency (created_at);

CREATE INDEX outbox_events_tenant ON outbox_events (tenant, id);
CREATE INDEX deliveries_app_id ON deliveries (app_id, id);

-- API keys: only a SHA-256 of each key is stored. A key with an app_id sees
-- and touches only that application.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    app_id       text        REFERENCES applications (id) ON DELETE CASCADE,
    hash         bytea       NOT NULL UNIQUE,
    prefix       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
