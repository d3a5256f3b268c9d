"""Posting engine and ledger reads: users, accounts, fundings, transfers, balances, entries."""
