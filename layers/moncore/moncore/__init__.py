"""MonCore kernel: the system of record and control layer (ledger, exactly-once execution, compliance, evidence).

Layout (DESIGN.md section 4): `domain` is pure (no I/O); `store` is the only package that talks to DynamoDB;
services (`ledger`, `tenancy`, `idempotency`) combine them; `http` maps requests and errors for the thin handlers.
"""

__version__ = "0.1.0"
