-- Short links of the link-shortener module, and their clicks.
CREATE TABLE links (
    id         text        PRIMARY KEY,
    app_id     text        NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    code       text        NOT NULL UNIQUE,
    url        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX links_app ON links (app_id);

CREATE TABLE clicks (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id    text        NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    clicked_at timestamptz NOT NULL,
    user_agent text        NOT NULL DEFAULT '',
    referer    text        NOT NULL DEFAULT ''
);

CREATE INDEX clicks_link ON clicks (link_id, clicked_at);
