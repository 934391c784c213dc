-- The API caches what a publish checks: whether the application exists, and
-- the event type with its schema (registered or not). Every change to either
-- notifies the API processes on commit, on channel hookd_publish_checks, so
-- that they drop the stale entry before the next publish. The payload is
-- "schema app app_id" or "schema event_type name" (an update notifies the
-- old and the new key; Postgres sends a repeated notification once).
CREATE FUNCTION applications_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('hookd_publish_checks', TG_TABLE_SCHEMA || ' app ' || OLD.id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('hookd_publish_checks', TG_TABLE_SCHEMA || ' app ' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

-- A new application matters too: the API may have cached that it did not
-- exist. Renames and metadata do not.
CREATE TRIGGER applications_notify
    AFTER INSERT OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION applications_notify();

CREATE TRIGGER applications_notify_update
    AFTER UPDATE ON applications
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION applications_notify();

CREATE FUNCTION event_types_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('hookd_publish_checks', TG_TABLE_SCHEMA || ' event_type ' || OLD.name);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('hookd_publish_checks', TG_TABLE_SCHEMA || ' event_type ' || NEW.name);
    END IF;
    RETURN NULL;
END
$$;

-- Event types change rarely (admin writes): every change notifies, even
-- one of the description alone.
CREATE TRIGGER event_types_notify
    AFTER INSERT OR UPDATE OR DELETE ON event_types
    FOR EACH ROW EXECUTE FUNCTION event_types_notify();
