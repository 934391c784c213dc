-- Workers cache what the delivery path reads of endpoints (URL, headers,
-- state, signing secrets, subscriptions). Every change to it notifies them
-- on commit, with "schema endpoint_id app_id" as payload (app_id is empty
-- for a secret), so that they drop the stale entries.
CREATE FUNCTION endpoints_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r endpoints;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('hookd_endpoints', TG_TABLE_SCHEMA || ' ' || r.id || ' ' || r.app_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_notify
    AFTER INSERT OR DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION endpoints_notify();

-- Only changes the delivery path reads: the failing streak's start and end
-- count, its every extension does not.
CREATE TRIGGER endpoints_notify_update
    AFTER UPDATE ON endpoints
    FOR EACH ROW
    WHEN (OLD.app_id IS DISTINCT FROM NEW.app_id
       OR OLD.url IS DISTINCT FROM NEW.url
       OR OLD.event_types IS DISTINCT FROM NEW.event_types
       OR OLD.filter::text IS DISTINCT FROM NEW.filter::text
       OR OLD.headers IS DISTINCT FROM NEW.headers
       OR OLD.rate_limit IS DISTINCT FROM NEW.rate_limit
       OR OLD.disabled IS DISTINCT FROM NEW.disabled
       OR (OLD.failing_since IS NULL) <> (NEW.failing_since IS NULL))
    EXECUTE FUNCTION endpoints_notify();

CREATE FUNCTION endpoint_secrets_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r endpoint_secrets;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('hookd_endpoints', TG_TABLE_SCHEMA || ' ' || r.endpoint_id || ' ');
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_secrets_notify
    AFTER INSERT OR UPDATE OR DELETE ON endpoint_secrets
    FOR EACH ROW EXECUTE FUNCTION endpoint_secrets_notify();
