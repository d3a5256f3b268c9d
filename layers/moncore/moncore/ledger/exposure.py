"""Tenant exposure (API.md `GET /v1/tenant/exposure`), derived from the ledger and the balances it drives.

- balances_by_currency: the sum of the tenant's USER account balances per currency (what the tenant's customers hold;
  system accounts mirror external positions and are left out);
- monthly_volume: gross settled outflows of user accounts in the current UTC calendar month, per currency (every
  SETTLED debit leg on a user account: transfers, captures, FX sold, reversals paid back);
- monthly_fx_volume: the part of monthly_volume that is FX conversions, per sold currency;
- cards_issued: cards arrive with issue 5; 0 until then.

It reads every user account's month of entries (by_account index): fine for an on-demand read, and the per-user
counters of the limits engine are the path to a constant-cost answer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from moncore.domain.clock import now_rfc3339
from moncore.domain.money import format_minor
from moncore.domain.transactions import AccountKind, Phase, TxnType
from moncore.store import accounts as account_store
from moncore.store import balances as balance_store
from moncore.store import ledger as ledger_store


def tenant_exposure(tenant_id: str, *, now: str | None = None) -> dict[str, Any]:
    moment = now or now_rfc3339()
    month_start = f"{moment[:7]}-01T00:00:00.000000Z"
    posted: dict[str, int] = defaultdict(int)
    available: dict[str, int] = defaultdict(int)
    volume: dict[str, int] = defaultdict(int)
    fx_volume: dict[str, int] = defaultdict(int)
    accounts = 0
    for item in account_store.tenant_accounts(tenant_id):
        ref = account_store.to_ref(item)
        if ref.kind is not AccountKind.USER:
            continue
        accounts += 1
        balance, _ = balance_store.read_balance(tenant_id, ref)
        posted[ref.currency] += balance.posted_minor
        available[ref.currency] += balance.available_minor
        for entry in ledger_store.account_entries(tenant_id, ref.account_id, since=month_start, upto=moment):
            if entry.phase == Phase.SETTLED.value and entry.amount_minor < 0:
                volume[entry.currency] += -entry.amount_minor
                if entry.txn_type == TxnType.FX_CONVERSION.value:
                    fx_volume[entry.currency] += -entry.amount_minor
    return {
        "balances_by_currency": {
            ccy: {
                "posted_minor": posted[ccy],
                "available_minor": available[ccy],
                "posted": format_minor(posted[ccy], ccy),
            }
            for ccy in sorted(posted)
        },
        "monthly_volume": _amounts(volume),
        "monthly_fx_volume": _amounts(fx_volume),
        "month": moment[:7],
        "user_accounts": accounts,
        "cards_issued": 0,
        "as_of": moment,
    }


def _amounts(by_currency: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {ccy: {"amount_minor": v, "amount": format_minor(v, ccy)} for ccy, v in sorted(by_currency.items())}
