-- Sessions of the consumer portal (/portal/): each opens one application's
-- portal to whoever holds its link, until expires_at or until revoked. Only a
-- SHA-256 of the session's token is stored.
CREATE TABLE portal_sessions (
    id         text        PRIMARY KEY,
    app_id     text        NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE INDEX portal_sessions_app ON portal_sessions (app_id);
-- The reconciler deletes sessions a day after they end (expired or revoked).
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);
