"""Compliance checks of a money movement before it is posted: geo restrictions and KYC tier limits (DESIGN.md section
6; docs/limits-and-geo.md).

`MovementChecks.decide` reads the users whose accounts move (one BatchGetItem) and the tenant configuration (cached),
then
- checks every involved user's country against the tenant's jurisdictions and the FATF list (GeoBlocked);
- for the debited user (an outgoing movement): resolves its tier's limits in the account's currency and checks the
  amount against them (LimitExceeded for the per-transaction limit, or an amount above a window on its own); the day
  and month counters are charged by the posting itself, conditionally, in the same TransactWriteItems (invariant 7);
- for the credited user account: the balance cap, enforced by a condition on the credited balance item.
It returns the checks to record on the transaction (invariant 5) and what the posting must enforce. Every refusal is
audited (action `compliance.blocked`) before it is raised: nothing is posted, but the refusal is on record.

What counts as outgoing (decided per operation by the caller, see docs/limits-and-geo.md): transfers to another user
and FX conversions count for the payer when posted or authorised (a hold counts when placed; releasing it does not
give the amount back); transfers between two accounts of the same user in one currency do not; fundings, captures
and reversals do not count, and fundings, settled transfers, FX conversions and captures are capped on the credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.context import Caller
from moncore.domain.errors import DomainError, GeoBlocked, LimitExceeded, NotFound
from moncore.domain.geo import check_user_country
from moncore.domain.limits import (
    BalanceCap,
    CounterCharge,
    TierLimits,
    balance_cap,
    check_outgoing,
    outgoing_charges,
    tier_limits,
)
from moncore.domain.transactions import AccountKind, AccountRef
from moncore.store import audit as audit_store
from moncore.store.accounts import find_user_items
from moncore.store.balances import read_balance
from moncore.store.models import UserItem
from moncore.tenancy.service import TenancyService


@dataclass(frozen=True, slots=True)
class MovementDecision:
    """The allow decision's checks (recorded on the transaction) and the limits the posting enforces atomically."""

    checks: tuple[dict[str, Any], ...] = ()
    outgoing: tuple[tuple[str, TierLimits, int], ...] = ()  # (user id, limits, amount) charged to the counters
    caps: tuple[BalanceCap, ...] = ()

    def counters(self, recorded_at: str) -> tuple[CounterCharge, ...]:
        """The counter charges of a posting recorded at `recorded_at` (its windows are those of that instant)."""
        return tuple(
            charge
            for user_id, limits, amount_minor in self.outgoing
            for charge in outgoing_charges(limits, user_id, amount_minor, recorded_at)
        )


class MovementChecks:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    def decide(
        self,
        caller: Caller,
        *,
        subject_id: str,
        debit: AccountRef | None = None,
        debit_minor: int = 0,
        credit: AccountRef | None = None,
        credit_minor: int = 0,
    ) -> MovementDecision:
        """Checks of a movement of `debit_minor` out of `debit` (counted as the debited user's outgoing money) and
        `credit_minor` into `credit` (capped); either may be None or a system account (nothing to check for it).
        A transfer between two accounts of one user in one currency is not outgoing. Raises GeoBlocked or
        LimitExceeded after auditing the refusal under `subject_id` (the transaction id)."""
        tenant_id = caller.require_tenant()
        payer = debit if debit is not None and debit.kind is AccountKind.USER else None
        payee = credit if credit is not None and credit.kind is AccountKind.USER else None
        if payer and payee and (payer.user_id, payer.currency) == (payee.user_id, payee.currency):
            payer = None  # the money stays with its owner in the same currency
        config = self._tenancy.tenant_config(tenant_id)
        users = _users(tenant_id, [ref for ref in (debit, credit) if ref and ref.kind is AccountKind.USER])
        checks: list[dict[str, Any]] = []
        outgoing: tuple[tuple[str, TierLimits, int], ...] = ()
        caps: tuple[BalanceCap, ...] = ()
        try:
            for user in users.values():
                checks.append({**check_user_country(user.country, config.jurisdictions), "user_id": user.id})
            if payer is not None:
                user = users[payer.user_id]
                limits = tier_limits(user.tier, payer.currency, config.tier_limits)
                check_outgoing(limits, debit_minor)
                checks.append(
                    {
                        "check": "tier_limits",
                        "user_id": user.id,
                        "account_id": payer.account_id,
                        "amount_minor": debit_minor,
                        **limits.record(),
                        "result": "pass",
                        "enforced": "per-transaction before the write; daily and monthly by counter conditions",
                    }
                )
                outgoing = ((user.id, limits, debit_minor),)
            if payee is not None:
                user = users[payee.user_id]
                limits = tier_limits(user.tier, payee.currency, config.tier_limits)
                cap = balance_cap(limits, payee.account_id, credit_minor)
                caps = () if cap is None else (cap,)
                checks.append(
                    {
                        "check": "balance_cap",
                        "user_id": user.id,
                        "account_id": payee.account_id,
                        "amount_minor": credit_minor,
                        "tier": limits.tier,
                        "currency": limits.currency,
                        "source": limits.source,
                        "balance_cap_minor": limits.balance_cap_minor,
                        "result": "pass",
                        "enforced": "by a condition on the credited balance",
                    }
                )
        except (GeoBlocked, LimitExceeded) as refused:
            audit_refusal(caller, refused, subject_id=subject_id, context={"checks": checks})
            raise
        return MovementDecision(tuple(checks), outgoing, caps)

    def precheck_caps(self, caller: Caller, decision: MovementDecision, *, subject_id: str) -> None:
        """Refuse early when a credited balance is already too high for the credit: a read, so only a courtesy
        before an irreversible step (collecting money from outside); the posting's condition is the enforcement."""
        tenant_id = caller.require_tenant()
        for cap in decision.caps:
            account = AccountRef(cap.account_id, cap.currency, AccountKind.USER)
            posted_minor = read_balance(tenant_id, account)[0].posted_minor
            if posted_minor + cap.credit_minor > cap.cap_minor:
                refused = cap.refusal(cap.credit_minor)
                audit_refusal(caller, refused, subject_id=subject_id, context={"checks": list(decision.checks)})
                raise refused


def audit_refusal(caller: Caller, refused: DomainError, *, subject_id: str, context: dict[str, Any]) -> None:
    """Record a compliance refusal (nothing else is written: the posting it refused never happened)."""
    audit_store.append(
        audit_event(
            tenant_id=caller.require_tenant(),
            action="compliance.blocked",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=subject_id,
            payload={"code": refused.code, "detail": refused.detail, "errors": refused.errors or [], **context},
        )
    )


def _users(tenant_id: str, accounts: list[AccountRef]) -> dict[str | None, UserItem]:
    """The users of `accounts`, read together (one BatchGetItem on the posting path, not one GetItem each)."""
    found = find_user_items(tenant_id, [account.user_id or "" for account in accounts])
    for account in accounts:
        if account.user_id not in found:
            raise NotFound(f"the user of account {account.account_id} was not found")
    return {account.user_id: found[account.user_id or ""] for account in accounts}
