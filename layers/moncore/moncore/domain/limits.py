"""KYC tier limits: which limits apply, what a movement charges against them, and the refusal. Pure, no I/O.

A user's tier (tier_0 at creation; moved only by the kernel's KYC adjudication) selects, per currency, four limits in
that currency's ISO 4217 minor units (docs/limits-and-geo.md):
- per_transaction_minor: one outgoing movement (checked before the write: a single request cannot race itself);
- daily_minor / monthly_minor: the sum of the user's outgoing movements in a UTC calendar day / month, enforced by a
  counter item updated in the posting's own TransactWriteItems with a condition (invariant 7, never read-then-write);
- balance_cap_minor: the posted balance of each of the user's accounts in that currency after a credit, enforced by a
  condition on the credited balance item in the same transaction.
None means "no limit". A tier without an entry for a currency allows nothing in it (fail closed): limits are never
converted between currencies, so a missing currency is a configuration gap, not an unlimited one.

Defaults (DEFAULT_TIER_UNITS x CURRENCY_UNIT_MINOR) are placeholders for a sandbox; a tenant sets its programme's own
amounts per tier and currency (TenantItem.tier_limits, validated by `check_overrides`). An override of a (tier,
currency) pair replaces all four limits of that pair; everything else keeps the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from moncore.domain.errors import LimitExceeded, ValidationFailed
from moncore.domain.money import MAX_AMOUNT_MINOR, is_currency


class LimitKind(StrEnum):
    PER_TRANSACTION = "per_transaction"
    DAILY = "daily"
    MONTHLY = "monthly"
    BALANCE_CAP = "balance_cap"


TIERS = ("tier_0", "tier_1", "tier_2")
DEFAULT_TIER = "tier_0"
LIMIT_FIELDS = {kind: f"{kind.value}_minor" for kind in LimitKind}

# Default limits in nominal units (about one euro each), turned into minor units per currency below. tier_0 is a
# registered user whose identity the kernel has not verified yet; tier_1 verified identity; tier_2 enhanced due
# diligence. Sized for a sandbox product, not taken from any regulation: a tenant must set its own.
DEFAULT_TIER_UNITS: dict[str, dict[LimitKind, int]] = {
    "tier_0": {
        LimitKind.PER_TRANSACTION: 1_000,
        LimitKind.DAILY: 2_500,
        LimitKind.MONTHLY: 5_000,
        LimitKind.BALANCE_CAP: 5_000,
    },
    "tier_1": {
        LimitKind.PER_TRANSACTION: 5_000,
        LimitKind.DAILY: 10_000,
        LimitKind.MONTHLY: 25_000,
        LimitKind.BALANCE_CAP: 25_000,
    },
    "tier_2": {
        LimitKind.PER_TRANSACTION: 25_000,
        LimitKind.DAILY: 50_000,
        LimitKind.MONTHLY: 150_000,
        LimitKind.BALANCE_CAP: 250_000,
    },
}
# Minor units of each currency per nominal unit: round parities to the euro (2025 levels, rounded down so a default
# is never much looser than its euro amount). Not an exchange rate: nothing is converted with it, it only scales the
# default table. Currencies not listed have no default limits (fail closed) until a tenant configures them.
CURRENCY_UNIT_MINOR: dict[str, int] = {
    "EUR": 100,
    "USD": 100,
    "GBP": 85,
    "CHF": 90,
    "JPY": 160,  # exponent 0
    "BHD": 400,  # exponent 3
    "SEK": 1_100,
    "DKK": 740,
    "NOK": 1_100,
    "PLN": 430,
}


@dataclass(frozen=True, slots=True)
class TierLimits:
    """The limits of one tier in one currency, minor units of that currency; None is "no limit"."""

    tier: str
    currency: str
    per_transaction_minor: int | None
    daily_minor: int | None
    monthly_minor: int | None
    balance_cap_minor: int | None
    source: str  # default | tenant | none (fail closed)

    def of(self, kind: LimitKind) -> int | None:
        value: int | None = getattr(self, LIMIT_FIELDS[kind])
        return value

    def record(self) -> dict[str, Any]:
        """What the compliance decision stores: the tier and every limit applied (invariant 5)."""
        return {
            "tier": self.tier,
            "currency": self.currency,
            "source": self.source,
            **{LIMIT_FIELDS[kind]: self.of(kind) for kind in LimitKind},
        }


@dataclass(frozen=True, slots=True)
class CounterCharge:
    """One calendar-window counter a posting adds to, atomically with it: `delta_minor` may be added only while the
    counter's total stays at or below `limit_minor`. `window` is "day" or "month"; `period` is the UTC date
    ("2026-11-22") or month ("2026-11") of the posting's recorded_at."""

    user_id: str
    currency: str
    kind: LimitKind  # DAILY | MONTHLY
    period: str
    delta_minor: int
    limit_minor: int
    tier: str
    expires_at: int  # epoch seconds: the counter is useless after its window (DynamoDB TTL removes it later)

    @property
    def window(self) -> str:
        return "day" if self.kind is LimitKind.DAILY else "month"

    def refusal(self) -> LimitExceeded:
        return exceeded(self.kind, self.tier, self.currency, self.limit_minor, self.delta_minor)


@dataclass(frozen=True, slots=True)
class BalanceCap:
    """The credited account's posted balance may reach `cap_minor` at most after this posting's credit of
    `credit_minor`."""

    account_id: str
    currency: str
    cap_minor: int
    tier: str
    credit_minor: int

    def refusal(self, amount_minor: int) -> LimitExceeded:
        return exceeded(LimitKind.BALANCE_CAP, self.tier, self.currency, self.cap_minor, amount_minor)


def tier_limits(tier: str, currency: str, overrides: Mapping[str, Any] | None = None) -> TierLimits:
    """The limits of `tier` in `currency`: the tenant's override for the pair, else the default, else none at all
    (every limit 0: an unknown tier or an unconfigured currency allows nothing)."""
    custom = (overrides or {}).get(tier, {}).get(currency)
    if custom is not None:
        values = {kind: custom.get(LIMIT_FIELDS[kind]) for kind in LimitKind}
        return _limits(tier, currency, values, "tenant")
    units, scale = DEFAULT_TIER_UNITS.get(tier), CURRENCY_UNIT_MINOR.get(currency)
    if units is None or scale is None:
        return _limits(tier, currency, dict.fromkeys(LimitKind, 0), "none")
    return _limits(tier, currency, {kind: units[kind] * scale for kind in LimitKind}, "default")


def _limits(tier: str, currency: str, values: Mapping[LimitKind, int | None], source: str) -> TierLimits:
    return TierLimits(
        tier,
        currency,
        values[LimitKind.PER_TRANSACTION],
        values[LimitKind.DAILY],
        values[LimitKind.MONTHLY],
        values[LimitKind.BALANCE_CAP],
        source,
    )


def outgoing_charges(
    limits: TierLimits, user_id: str, amount_minor: int, recorded_at: str
) -> tuple[CounterCharge, ...]:
    """Check the per-transaction limit and build the day and month counter charges of an outgoing movement of
    `amount_minor` recorded at `recorded_at` (RFC 3339 UTC); see check_outgoing."""
    check_outgoing(limits, amount_minor)
    charges = []
    for kind, period, expires_at in _windows(recorded_at):
        limit = limits.of(kind)
        if limit is not None:
            charges.append(
                CounterCharge(user_id, limits.currency, kind, period, amount_minor, limit, limits.tier, expires_at)
            )
    return tuple(charges)


def recorded_charges(record: Mapping[str, Any], recorded_at: str) -> tuple[CounterCharge, ...]:
    """The counter charges a posting made, rebuilt from the `tier_limits` check it recorded (TierLimits.record() plus
    user_id and amount_minor) and its recorded_at: one per window whose limit was not null. Nothing is re-checked:
    this is what the ledger says was charged (the rebuild job's derivation of the counters)."""
    charges = []
    for kind, period, expires_at in _windows(recorded_at):
        limit = record.get(LIMIT_FIELDS[kind])
        if limit is not None:
            charges.append(
                CounterCharge(
                    str(record["user_id"]),
                    str(record["currency"]),
                    kind,
                    period,
                    int(record["amount_minor"]),
                    int(limit),
                    str(record.get("tier", "")),
                    expires_at,
                )
            )
    return tuple(charges)


def check_outgoing(limits: TierLimits, amount_minor: int) -> None:
    """LimitExceeded when the amount alone exceeds the per-transaction, daily or monthly limit. The per-transaction
    limit is only ever checked here (one request cannot race itself); the windows are checked here too because the
    counter condition `attribute_not_exists(total) OR total <= limit - delta` would let a first charge above the
    limit through."""
    for kind in (LimitKind.PER_TRANSACTION, LimitKind.DAILY, LimitKind.MONTHLY):
        limit = limits.of(kind)
        if limit is not None and amount_minor > limit:
            raise exceeded(kind, limits.tier, limits.currency, limit, amount_minor)


def balance_cap(limits: TierLimits, account_id: str, credit_minor: int) -> BalanceCap | None:
    """The cap to enforce on a credit of `credit_minor` to `account_id`, or None without a cap. Raises
    LimitExceeded when the credit alone exceeds the cap (the condition would need a negative bound)."""
    cap = limits.balance_cap_minor
    if cap is None:
        return None
    found = BalanceCap(account_id, limits.currency, cap, limits.tier, credit_minor)
    if credit_minor > cap:
        raise found.refusal(credit_minor)
    return found


def exceeded(kind: LimitKind, tier: str, currency: str, limit_minor: int, amount_minor: int) -> LimitExceeded:
    """The refusal naming the limit, so a partner can tell its user which one and how much it is."""
    what = {
        LimitKind.PER_TRANSACTION: "per-transaction limit",
        LimitKind.DAILY: "daily limit (UTC calendar day)",
        LimitKind.MONTHLY: "monthly limit (UTC calendar month)",
        LimitKind.BALANCE_CAP: "balance cap",
    }[kind]
    detail = (
        f"the {what} of {tier} in {currency} allows nothing (no limits configured for {currency})"
        if limit_minor == 0
        else f"{amount_minor} minor units would exceed the {what} of {tier} in {currency}: {limit_minor} minor units"
    )
    return LimitExceeded(
        detail,
        errors=[
            {
                "loc": ["body", "amount_minor"],
                "msg": f"exceeds the {what}",
                "limit": kind.value,
                "tier": tier,
                "currency": currency,
                "limit_minor": limit_minor,
            }
        ],
    )


# Counters outlive their window a little, so a late reader (support, the rebuild job) can still see them.
_DAY_COUNTER_TTL = timedelta(days=35)
_MONTH_COUNTER_TTL = timedelta(days=400)


def _windows(recorded_at: str) -> tuple[tuple[LimitKind, str, int], ...]:
    """(kind, period, expires_at epoch s) of the UTC calendar day and month containing `recorded_at`."""
    moment = datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).astimezone(UTC)
    day_start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    month_start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    return (
        (LimitKind.DAILY, day_start.strftime("%Y-%m-%d"), int((day_start + _DAY_COUNTER_TTL).timestamp())),
        (LimitKind.MONTHLY, month_start.strftime("%Y-%m"), int((month_start + _MONTH_COUNTER_TTL).timestamp())),
    )


def check_overrides(raw: object) -> dict[str, dict[str, dict[str, int | None]]]:
    """A tenant's tier limit overrides, validated: {tier: {currency: {per_transaction_minor, daily_minor,
    monthly_minor, balance_cap_minor}}}, every limit a non-negative int in minor units or None (no limit), all four
    present. ValidationFailed names the first problem."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _invalid([], "must be an object of tiers")
    checked: dict[str, dict[str, dict[str, int | None]]] = {}
    for tier, currencies in raw.items():
        if tier not in TIERS:
            raise _invalid([tier], f"unknown tier; one of {', '.join(TIERS)}")
        if not isinstance(currencies, Mapping):
            raise _invalid([tier], "must be an object of currencies")
        checked[tier] = {}
        for currency, values in currencies.items():
            if not isinstance(currency, str) or not is_currency(currency):
                raise _invalid([tier, str(currency)], "not an ISO 4217 currency with a minor unit")
            if not isinstance(values, Mapping) or set(values) != set(LIMIT_FIELDS.values()):
                raise _invalid([tier, currency], f"needs exactly {', '.join(LIMIT_FIELDS.values())}")
            for name, value in values.items():
                valid = value is None or (type(value) is int and 0 <= value <= MAX_AMOUNT_MINOR)
                if not valid:
                    raise _invalid([tier, currency, name], "a non-negative integer in minor units, or null")
            checked[tier][currency] = {name: values[name] for name in LIMIT_FIELDS.values()}
    return checked


def _invalid(loc: list[str], msg: str) -> ValidationFailed:
    return ValidationFailed(
        f"tier_limits: {'.'.join(loc) or 'value'} {msg}",
        errors=[{"loc": ["body", "tier_limits", *loc], "msg": msg}],
    )
