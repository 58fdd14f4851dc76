-- An agent's invitation to apply as a merchant under it: single use, with an expiry. Only the
-- SHA-256 of its secret is stored; `merchant_id` is who used it.
CREATE TABLE agent_invitations (
    id           text PRIMARY KEY,
    agent_id     text NOT NULL REFERENCES agents (id),
    digest       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    merchant_id  text
);
CREATE INDEX agent_invitations_agent ON agent_invitations (agent_id, created_at);
