-- deliveries: one row per (event, endpoint), written by the fan-out.
CREATE TABLE deliveries (
    id               text        PRIMARY KEY,
    event_id         text        NOT NULL,
    endpoint_id      text        NOT NULL,
    app_id           text        NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    succeeded_at     timestamptz,
    failed_at        timestamptz,
    UNIQUE (event_id, endpoint_id)
);

CREATE INDEX deliveries_app_created ON deliveries (app_id, created_at);
CREATE INDEX deliveries_endpoint_created ON deliveries (endpoint_id, created_at);
CREATE INDEX deliveries_pending ON deliveries (updated_at) WHERE status = 'pending';

-- delivery_attempts: one row per HTTP attempt.
CREATE TABLE delivery_attempts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   text        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    status_code   integer,
    response_body text,
    error         text
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempted_at);
