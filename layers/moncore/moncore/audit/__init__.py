"""Audit evidence: sealing of ledger legs and audit events into signed blocks, proofs, chain verification."""
