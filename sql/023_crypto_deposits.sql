-- Crypto deposits (issue 15): one address per payment, derived from the channel's extended
-- public key at an index counted per chain, never reused; the chain events the watcher found,
-- keyed so that the same transfer in a replacing block is a new row and a re-scan is not; and
-- how far the watcher has followed each channel's chain, with the recent block hashes it saw.

CREATE TABLE deposit_counters (
    chain       text PRIMARY KEY,            -- CAIP-2, e.g. eip155:1
    next_index  bigint NOT NULL DEFAULT 0 CHECK (next_index >= 0)
);

CREATE TABLE deposit_addresses (
    chain       text NOT NULL,
    idx         bigint NOT NULL CHECK (idx >= 0),
    address     text NOT NULL,               -- lower-case hex
    payment_id  text NOT NULL UNIQUE REFERENCES payments (id),
    channel     text NOT NULL,
    asset       text NOT NULL,               -- ETH | USDT
    amount_due  numeric(78, 0) NOT NULL CHECK (amount_due > 0),
    reported    text,                        -- the outcome last sent to the ledger
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, idx),
    UNIQUE (chain, address)
);

CREATE TABLE chain_events (
    chain         text NOT NULL,
    tx_hash       text NOT NULL,
    log_index     integer NOT NULL,          -- -1: a native ETH transfer (the transaction itself)
    block_hash    text NOT NULL,
    block_number  bigint NOT NULL,
    address       text NOT NULL,             -- the deposit address it paid
    asset         text NOT NULL,
    amount        numeric(78, 0) NOT NULL CHECK (amount >= 0),
    orphaned      boolean NOT NULL DEFAULT false,  -- its block left the canonical chain
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, tx_hash, log_index, block_hash)
);
CREATE INDEX chain_events_address ON chain_events (chain, address);

CREATE TABLE chain_blocks (
    channel      text NOT NULL,
    number       bigint NOT NULL,
    hash         text NOT NULL,
    parent_hash  text NOT NULL,
    PRIMARY KEY (channel, number)
);

-- The deposit as the customer is shown it: address, amount due, URI, confirmations so far.
ALTER TABLE payments ADD COLUMN crypto jsonb;
