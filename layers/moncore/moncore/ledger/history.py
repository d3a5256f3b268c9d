"""Point-in-time answers derived from the ledger alone (invariant 2): an account's balance at an instant is the sum of
its entries recorded at or before that instant."""

from __future__ import annotations

from moncore.domain.transactions import Balance, Phase
from moncore.store import ledger as ledger_store


def balance_as_of(tenant_id: str, account_id: str, as_of: str) -> tuple[Balance, int]:
    """(balance, number of entries) of the account at `as_of` (normalised RFC 3339)."""
    entries = list(ledger_store.account_entries(tenant_id, account_id, upto=as_of))
    balance = Balance.of_legs((Phase(e.phase), e.amount_minor) for e in entries)
    return balance.checked(account_id), len(entries)
