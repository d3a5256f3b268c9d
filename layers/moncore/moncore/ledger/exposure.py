"""Tenant exposure (API.md `GET /v1/tenant/exposure`), derived from the ledger and the balances it drives.

- balances_by_currency: the sum of the tenant's USER account balances per currency (what the tenant's customers hold;
  system accounts mirror external positions and are left out);
- monthly_volume: gross settled outflows of user accounts in the current UTC calendar month, per currency (every
  SETTLED debit leg on a user account: transfers, captures, FX sold, reversals paid back);
- monthly_fx_volume: the part of monthly_volume that is FX conversions, per sold currency;
- products: per transaction type (transfer, funding, fx_conversion, ...), the transactions this month that settled
  money on a user account, with the settled amounts out of and into user accounts per currency;
- cards_issued: the cards the tenant issued (every status; `cards` splits them by status: active, frozen, closed).

`user_exposure` is one user's view: its rolling-window volumes per currency (the AML velocity items: last hour, day,
30 days, in and out) and its tier-limit usage (the day and month counters against the limits in force).

It reads every user account's month of entries (by_account index): fine for an on-demand read, and the per-user
counters of the limits engine are the path to a constant-cost answer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import NotFound
from moncore.domain.limits import tier_limits
from moncore.domain.money import format_minor
from moncore.domain.transactions import AccountKind, Phase, TxnType
from moncore.domain.velocity import summarize
from moncore.store import accounts as account_store
from moncore.store import balances as balance_store
from moncore.store import cards as card_store
from moncore.store import ledger as ledger_store
from moncore.store.ledger import counter_usage
from moncore.store.velocity import read_users_and_velocity
from moncore.tenancy.service import TenancyService


def tenant_exposure(tenant_id: str, *, now: str | None = None) -> dict[str, Any]:
    moment = now or now_rfc3339()
    month_start = f"{moment[:7]}-01T00:00:00.000000Z"
    posted: dict[str, int] = defaultdict(int)
    available: dict[str, int] = defaultdict(int)
    volume: dict[str, int] = defaultdict(int)
    fx_volume: dict[str, int] = defaultdict(int)
    products: dict[str, _Product] = defaultdict(_Product)
    accounts = 0
    cards = card_store.card_counts(tenant_id)
    for item in account_store.tenant_accounts(tenant_id):
        ref = account_store.to_ref(item)
        if ref.kind is not AccountKind.USER:
            continue
        accounts += 1
        balance, _ = balance_store.read_balance(tenant_id, ref)
        posted[ref.currency] += balance.posted_minor
        available[ref.currency] += balance.available_minor
        for entry in ledger_store.account_entries(tenant_id, ref.account_id, since=month_start, upto=moment):
            if entry.phase == Phase.SETTLED.value:
                products[entry.txn_type or "unknown"].add(entry.txn_id, entry.currency, entry.amount_minor)
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
        "products": {name: products[name].view() for name in sorted(products)},
        "month": moment[:7],
        "user_accounts": accounts,
        "cards_issued": sum(cards.values()),
        "cards": {status.lower(): count for status, count in sorted(cards.items())},
        "as_of": moment,
    }


def _amounts(by_currency: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {ccy: {"amount_minor": v, "amount": format_minor(v, ccy)} for ccy, v in sorted(by_currency.items())}


class _Product:
    """One transaction type's month: distinct transactions and settled amounts out of / into user accounts."""

    def __init__(self) -> None:
        self.txn_ids: set[str] = set()
        self.out: dict[str, int] = defaultdict(int)
        self.into: dict[str, int] = defaultdict(int)

    def add(self, txn_id: str, currency: str, amount_minor: int) -> None:
        self.txn_ids.add(txn_id)
        if amount_minor < 0:
            self.out[currency] += -amount_minor
        else:
            self.into[currency] += amount_minor

    def view(self) -> dict[str, Any]:
        return {"transactions": len(self.txn_ids), "settled_out": _amounts(self.out), "settled_in": _amounts(self.into)}


def user_exposure(tenant_id: str, user_id: str, *, now: str | None = None) -> dict[str, Any]:
    """One user's rolling volumes and tier-limit usage per currency of its accounts (NotFound for an unknown user)."""
    moment = now or now_rfc3339()
    user = account_store.find_user_item(tenant_id, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    currencies = sorted({item.currency for item in account_store.user_accounts(tenant_id, user_id)})
    _, velocity = read_users_and_velocity(tenant_id, [], [(user_id, ccy) for ccy in currencies])
    config = TenancyService().tenant_config(tenant_id)
    by_currency: dict[str, Any] = {}
    for currency in currencies:
        windows = summarize(velocity.get((user_id, currency), {}), moment).record()
        limits = tier_limits(user.tier, currency, config.tier_limits)
        usage = counter_usage(tenant_id, user_id, currency, moment)
        by_currency[currency] = {
            "rolling": {name: {"count": c, "amount_minor": a} for name, (c, a) in windows.items()},
            "limits": {
                **limits.record(),
                "used_today_minor": usage.get("day", 0),
                "used_this_month_minor": usage.get("month", 0),
            },
        }
    return {"user_id": user_id, "tier": user.tier, "by_currency": by_currency, "as_of": moment}
