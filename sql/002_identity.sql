-- Identity and access: portal users in realms, roles, MFA, refresh-token families, the JWT
-- signing keys, versioned platform settings, and the append-only, hash-chained audit log.

CREATE TABLE roles (
    id           text PRIMARY KEY,
    realm        text NOT NULL CHECK (realm IN ('platform', 'merchant', 'agent')),
    name         text NOT NULL,
    permissions  text[] NOT NULL,
    builtin      boolean NOT NULL DEFAULT false,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              text PRIMARY KEY,
    email           text NOT NULL,
    realm           text NOT NULL CHECK (realm IN ('platform', 'merchant', 'agent')),
    org_id          text,
    password_hash   text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    mfa_secret      text,
    mfa_pending     text,  -- a secret being enrolled: active once a code from it is verified
    mfa_enabled     boolean NOT NULL DEFAULT false,
    mfa_last_step   bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((realm = 'platform') = (org_id IS NULL))
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_org ON users (realm, org_id);

CREATE TABLE user_roles (
    user_id  text NOT NULL REFERENCES users (id),
    role_id  text NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE recovery_codes (
    user_id   text NOT NULL REFERENCES users (id),
    digest    text NOT NULL,
    pending   boolean NOT NULL DEFAULT true,
    used_at   timestamptz,
    PRIMARY KEY (user_id, digest)
);

-- A family is one sign-in; each refresh spends its token and issues the next of the family.
CREATE TABLE refresh_tokens (
    id          text PRIMARY KEY,
    family_id   text NOT NULL,
    user_id     text NOT NULL REFERENCES users (id),
    digest      text NOT NULL,
    mfa         boolean NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE known_logins (
    user_id     text NOT NULL REFERENCES users (id),
    ip          text NOT NULL,
    country     text NOT NULL DEFAULT '',
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, ip, country)
);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    private_pem  text NOT NULL,
    public_pem   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

CREATE TABLE platform_settings (
    version     integer PRIMARY KEY,
    doc         jsonb NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

-- A key may be limited to some of the permissions a merchant's key can hold; NULL: all of them.
ALTER TABLE api_keys ADD COLUMN permissions text[];
ALTER TABLE merchants ADD COLUMN mfa_required boolean NOT NULL DEFAULT false;

CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY,
    at_us        bigint NOT NULL,
    actor        text NOT NULL,
    actor_realm  text NOT NULL,
    action       text NOT NULL,
    target       text,
    before       jsonb,
    after        jsonb,
    ip           text,
    request_id   text,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
