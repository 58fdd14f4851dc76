"""Worker pools: relay, risk, channel, ledger, notify, scheduler; the actor runtime they share."""
