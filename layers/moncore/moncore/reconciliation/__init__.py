"""Reconciliation (docs/reconciliation.md): bank statement parsing (`statements`) and the streaming matcher
(`matching`) that proves the ledger against the bank. Pure of AWS: the state machines and stores call into these."""
