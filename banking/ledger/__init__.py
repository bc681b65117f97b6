"""The double-entry ledger: accounts, immutable postings, two-phase and linked transfers."""
