-- Reconciliation with channels (issue 13, part C): one run per channel statement file, and the
-- discrepancies it found, each resolved once by someone with a reason.

-- A run is named by (channel, day, the file's hash): the same file again finds this run and
-- changes nothing; a changed file (the channel corrected it) is a new run.
CREATE TABLE recon_runs (
    id              text PRIMARY KEY,
    channel         text NOT NULL,
    day             date NOT NULL,
    file_sha256     text NOT NULL,
    status          text NOT NULL CHECK (status IN ('matched', 'discrepancies')),
    channel_count   integer NOT NULL,
    juhe_count      integer NOT NULL,
    matched_count   integer NOT NULL,
    -- per currency: {"USD": "123456"} (minor units, as strings: amounts outgrow 64 bits)
    channel_sums    jsonb NOT NULL,
    juhe_sums       jsonb NOT NULL,
    matched_sums    jsonb NOT NULL,
    discrepancies   integer NOT NULL,
    actor           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, day, file_sha256)
);
CREATE INDEX recon_runs_listed ON recon_runs (created_at DESC, id DESC);

CREATE TABLE recon_discrepancies (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES recon_runs (id),
    kind            text NOT NULL,
    type            text NOT NULL,
    reference       text NOT NULL,
    juhe_id         text NOT NULL,
    channel_value   text,
    juhe_value      text,
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'resolved', 'ignored')),
    action          text CHECK (action IN ('ignore', 'adjust')),
    reason          text,
    resolved_by     text,
    resolved_at     timestamptz,
    entry_id        bigint REFERENCES journal_entries (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'open') = (action IS NULL))
);
CREATE INDEX recon_discrepancies_run ON recon_discrepancies (run_id);
CREATE INDEX recon_discrepancies_listed ON recon_discrepancies (status, id);
