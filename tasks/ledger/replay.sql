-- Replays people can steer: dry runs, paces, and recoveries of endpoints.

-- Bulk retries may be dry runs (count, retry nothing) and may be paced:
-- rate is how many dead letters a second it retries at most (NULL: no pace).
ALTER TABLE dead_letter_retries
    ADD COLUMN dry_run boolean NOT NULL DEFAULT false,
    ADD COLUMN rate    integer CHECK (rate > 0);

-- Recoveries of an endpoint: every event of its subscription committed in
-- [since, until) after the endpoint was created that it has not received,
-- sent again (or, for a dry run, counted). The cursor is the last event
-- examined, in (created_at, id) order.
CREATE TABLE endpoint_recoveries (
    id          text        PRIMARY KEY,
    app_id      text        NOT NULL,
    endpoint_id text        NOT NULL,
    since       timestamptz NOT NULL,
    until       timestamptz NOT NULL,
    dry_run     boolean     NOT NULL DEFAULT false,
    rate        integer     CHECK (rate > 0),
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed')),
    cursor_at   timestamptz,
    cursor_id   text        NOT NULL DEFAULT '',
    recovered   integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);

CREATE INDEX endpoint_recoveries_finished ON endpoint_recoveries (finished_at) WHERE status = 'completed';
