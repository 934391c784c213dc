-- An endpoint may ask more of hookd's deliveries than a signature: a client
-- certificate (mutual TLS) with its private key, CA certificates that verify
-- its server instead of the system's, and OAuth 2.0 client credentials
-- (RFC 6749, section 4.4) whose bearer token each delivery carries. All PEM
-- columns hold what the API validated. tls_client_key and oauth_client_secret
-- are sealed with HOOKD_SECRETS_KEY as endpoint_secrets are (bound to
-- "endpoints:<id>:<column>"); the others are not secret.
ALTER TABLE endpoints
    ADD COLUMN tls_client_certificate text,
    ADD COLUMN tls_client_key text,
    ADD COLUMN tls_ca_bundle text,
    ADD COLUMN oauth_token_url text,
    ADD COLUMN oauth_client_id text,
    ADD COLUMN oauth_client_secret text,
    ADD COLUMN oauth_scopes text[],
    ADD COLUMN oauth_audience text,
    ADD CONSTRAINT endpoints_tls_client_pair
        CHECK ((tls_client_certificate IS NULL) = (tls_client_key IS NULL)),
    ADD CONSTRAINT endpoints_oauth_complete
        CHECK ((oauth_token_url IS NULL) = (oauth_client_id IS NULL)
           AND (oauth_token_url IS NULL) = (oauth_client_secret IS NULL));

-- The deliverer caches these as it does the rest of the endpoint (migration
-- 0008): a change notifies it. Sealing a column anew (hookd secrets
-- rotate-key) notifies too, which costs one reload.
CREATE TRIGGER endpoints_notify_auth
    AFTER UPDATE ON endpoints
    FOR EACH ROW
    WHEN (OLD.tls_client_certificate IS DISTINCT FROM NEW.tls_client_certificate
       OR OLD.tls_client_key IS DISTINCT FROM NEW.tls_client_key
       OR OLD.tls_ca_bundle IS DISTINCT FROM NEW.tls_ca_bundle
       OR OLD.oauth_token_url IS DISTINCT FROM NEW.oauth_token_url
       OR OLD.oauth_client_id IS DISTINCT FROM NEW.oauth_client_id
       OR OLD.oauth_client_secret IS DISTINCT FROM NEW.oauth_client_secret
       OR OLD.oauth_scopes IS DISTINCT FROM NEW.oauth_scopes
       OR OLD.oauth_audience IS DISTINCT FROM NEW.oauth_audience)
    EXECUTE FUNCTION endpoints_notify();
