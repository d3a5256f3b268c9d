"""The ledger side of a reconciliation (docs/reconciliation.md "Runs"): what the ledger says moved through a
provider's accounts on a day, seen from the bank account, and what the bank must hold at the end of a day.

- `day_legs`: the tenant's SETTLED legs recorded during the day (UTC) on the clearing accounts providers settle and on
  the safeguarding mirror, executed by `provider` (legs carry the provider that executed them), streamed account by
  account from the by_account index. Settlement transactions (a book transfer clearing -> safeguarding mirror the
  bank never sees) and reconciliation adjustments (corrections of the books, not bank movements) are left out. Each
  leg becomes a matcher `LedgerItem` with the provider's reference and the bank's sign: the negated leg (a funding
  debits its clearing account and credits the bank account; a payout the reverse).
- `client_balances_minor`: the sum of the tenant's user balances in a currency at the end of a day. By zero-sum
  (invariant 1) it is minus the sum of the tenant's system accounts, which are few, so it costs a snapshot and a
  day of entries per system account instead of a read per user account, and it is exact as of the day's end.
"""

from __future__ import annotations

from collections.abc import Iterator

from moncore.domain.reconciliation import LedgerItem, ledger_item
from moncore.domain.settlement import SAFEGUARDING, SETTLED_PURPOSES
from moncore.domain.snapshots import day_end, day_start
from moncore.domain.transactions import AccountKind, Phase, TxnType
from moncore.ledger.history import balance_as_of
from moncore.store import accounts as account_store
from moncore.store import ledger as ledger_store
from moncore.store.ledger import StoredEntry
from moncore.store.models import AccountItem

PURPOSES = frozenset({*SETTLED_PURPOSES, SAFEGUARDING})
NOT_BANK_MOVEMENTS = frozenset({TxnType.SETTLEMENT.value, TxnType.ADJUSTMENT.value})


def provider_accounts(tenant_id: str) -> list[AccountItem]:
    """The tenant's system accounts whose legs a bank statement shows (clearing accounts, the safeguarding mirror)."""
    return [
        item
        for item in account_store.tenant_accounts(tenant_id)
        if item.kind == AccountKind.SYSTEM.value and item.purpose in PURPOSES
    ]


def day_legs(tenant_id: str, provider: str, day: str) -> Iterator[tuple[StoredEntry, LedgerItem]]:
    """(leg, matcher item) of every leg of `provider` the bank should show for `day`, account by account."""
    since, upto = day_start(day), day_end(day)
    for account in provider_accounts(tenant_id):
        for entry in ledger_store.account_entries(tenant_id, account.id, since=since, upto=upto):
            if entry.phase != Phase.SETTLED.value or entry.provider != provider:
                continue
            if entry.txn_type in NOT_BANK_MOVEMENTS:
                continue
            yield (
                entry,
                ledger_item(
                    entry.txn_id, entry.provider_ref, -entry.amount_minor, entry.currency, entry.recorded_at[:10]
                ),
            )


def client_balances_minor(tenant_id: str, currency: str, day: str) -> int:
    """What the tenant's users held in `currency` at the end of `day` (posted balances): minus its system accounts'."""
    as_of = day_end(day)
    system_total = 0
    for item in account_store.tenant_accounts(tenant_id):
        if item.kind == AccountKind.SYSTEM.value and item.currency == currency:
            system_total += balance_as_of(tenant_id, item.id, as_of)[0].posted_minor
    return -system_total


def currencies(tenant_id: str) -> list[str]:
    return sorted({item.currency for item in provider_accounts(tenant_id)})
