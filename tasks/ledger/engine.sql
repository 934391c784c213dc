-- The outcome class of each attempt (success, http_5xx, timeout, ...).
ALTER TABLE delivery_attempts ADD COLUMN error_class text NOT NULL DEFAULT 'error';

-- Dead letters are failed deliveries, listed newest first.
CREATE INDEX deliveries_failed ON deliveries (failed_at, id) WHERE status = 'failed';

-- Bulk retries of dead letters run as tasks; this is their progress.
CREATE TABLE dead_letter_retries (
    id          text        PRIMARY KEY,
    filter      jsonb       NOT NULL,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed')),
    -- Only dead letters that failed before the job was created are retried,
    -- so that deliveries failing again are not retried forever.
    cutoff      timestamptz NOT NULL,
    cursor      text        NOT NULL DEFAULT '',
    retried     integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
