-- An endpoint signs with HMAC-SHA256 (v1 signatures, whsec_ secrets) or
-- ed25519 (v1a signatures, whsk_ private keys): the scheme of its newest key,
-- set at creation and by each rotation. public_key is that key's whpk_ public
-- key for ed25519, NULL for HMAC. Each row of endpoint_secrets keeps its own
-- scheme, told by its prefix, so that the keys a rotation retires keep
-- signing in their grace period whatever the new scheme.
ALTER TABLE endpoints
    ADD COLUMN signature_scheme text NOT NULL DEFAULT 'hmac-sha256'
        CONSTRAINT endpoints_signature_scheme CHECK (signature_scheme IN ('hmac-sha256', 'ed25519')),
    ADD COLUMN public_key text;
