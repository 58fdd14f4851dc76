"""The hot-wallet signer: the one process that holds a private key. It signs transfers out of
the platform's hot wallet (crypto refunds and payouts) that the Ethereum adapter asks for,
within its own limits, and nothing else: no process that faces the internet, and no database,
ever sees the key."""
