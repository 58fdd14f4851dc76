"""Pure domain logic: money, ledger postings, fees, state machines, risk rules, signing.

Nothing in this package performs I/O, so all of it is tested without services.
"""
