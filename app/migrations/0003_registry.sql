-- Applications are the tenants whose endpoints receive webhooks.
CREATE TABLE applications (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Endpoints receive an application's events. An empty event_types array
-- subscribes to every type.
CREATE TABLE endpoints (
    id          text        PRIMARY KEY,
    app_id      text        NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    url         text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    event_types text[]      NOT NULL DEFAULT '{}',
    disabled    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX endpoints_app ON endpoints (app_id);

-- Signing secrets of an endpoint. More than one is live while a secret is
-- rotated; expires_at ends the old one's grace period.
CREATE TABLE endpoint_secrets (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id text        NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz
);

CREATE INDEX endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id);
