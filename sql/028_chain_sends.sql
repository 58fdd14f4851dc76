-- Transfers out of a crypto channel's hot wallet (issue 15): a refund's (or payout's) transfer,
-- signed by the signer at a nonce counted here, broadcast, and watched until it is deep enough;
-- the gas it cost is the channel's. A refund to an address names it; a `return` sends back
-- what a reconciliation discrepancy holds (a crypto deposit short, over or late). Sweeps move a credited
-- USDT deposit into the hot wallet: ETH for its gas first (`sweep_gas`), then the tokens
-- (`sweep`, from the deposit address, at its own nonce).
CREATE TABLE chain_nonces (
    chain       text NOT NULL,
    address     text NOT NULL,               -- the hot wallet, lower-case hex
    next_nonce  bigint NOT NULL CHECK (next_nonce >= 0),
    PRIMARY KEY (chain, address)
);

CREATE TABLE chain_sends (
    id            text PRIMARY KEY,          -- the refund's or withdrawal's id: one transfer each
    kind          text NOT NULL
                  CHECK (kind IN ('refund', 'payout', 'return', 'sweep_gas', 'sweep')),
    channel       text NOT NULL,
    chain         text NOT NULL,
    from_address  text NOT NULL,
    nonce         bigint NOT NULL CHECK (nonce >= 0),
    asset         text NOT NULL,
    to_address    text NOT NULL,
    amount        numeric(78, 0) NOT NULL CHECK (amount > 0),
    raw_tx        text NOT NULL,
    tx_hash       text NOT NULL,
    status        text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'confirmed', 'failed')),
    network_fee   numeric(78, 0) CHECK (network_fee >= 0),  -- wei: gas used × its price
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain, from_address, nonce)
);
CREATE INDEX chain_sends_open ON chain_sends (channel) WHERE status = 'sent';

ALTER TABLE refunds ADD COLUMN destination text;

ALTER TABLE deposit_addresses ADD COLUMN swept_at timestamptz;
CREATE INDEX deposit_addresses_unswept ON deposit_addresses (channel)
    WHERE reported = 'paid' AND swept_at IS NULL AND asset = 'USDT';
