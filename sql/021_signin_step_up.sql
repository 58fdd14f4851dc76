-- Step-up at sign-in (issue 14, seed §7.3): a sign-in from a new device or country, or after a
-- burst of failures, must pass MFA even where the platform made it optional, and the session
-- keeps that demand across refreshes.
ALTER TABLE refresh_tokens ADD COLUMN step_up boolean NOT NULL DEFAULT false;

-- The devices an account signed in from, as digests of the portal's device id (a hash of
-- stable browser signals), never the id itself.
CREATE TABLE known_devices (
    user_id        text NOT NULL REFERENCES users (id),
    device_digest  text NOT NULL,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_digest)
);
