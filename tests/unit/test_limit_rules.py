"""Pure tier-limit rules (moncore.domain.limits): which limits apply, windows, refusals, override validation."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from moncore.domain.errors import LimitExceeded, ValidationFailed
from moncore.domain.limits import (
    CURRENCY_UNIT_MINOR,
    DEFAULT_TIER_UNITS,
    TIERS,
    LimitKind,
    balance_cap,
    check_outgoing,
    check_overrides,
    outgoing_charges,
    tier_limits,
)

EUR = {"per_transaction_minor": 100, "daily_minor": 300, "monthly_minor": None, "balance_cap_minor": 1_000}


def test_defaults_scale_the_nominal_table_per_currency() -> None:
    eur, jpy = tier_limits("tier_0", "EUR"), tier_limits("tier_0", "JPY")
    assert (eur.per_transaction_minor, eur.daily_minor, eur.monthly_minor, eur.balance_cap_minor) == (
        100_000,
        250_000,
        500_000,
        500_000,
    )
    assert jpy.per_transaction_minor == 1_000 * 160 and jpy.source == "default"
    # Higher tiers never allow less than lower ones, in any currency.
    for currency in CURRENCY_UNIT_MINOR:
        for lower, higher in pairwise(TIERS):
            for kind in LimitKind:
                low, high = tier_limits(lower, currency).of(kind), tier_limits(higher, currency).of(kind)
                assert low is not None and high is not None and low <= high
    assert set(DEFAULT_TIER_UNITS) == set(TIERS)


def test_an_override_replaces_one_tier_and_currency_only() -> None:
    overrides = {"tier_0": {"EUR": EUR}}
    eur = tier_limits("tier_0", "EUR", overrides)
    assert (eur.per_transaction_minor, eur.monthly_minor, eur.source) == (100, None, "tenant")
    assert tier_limits("tier_0", "USD", overrides).source == "default"
    assert tier_limits("tier_1", "EUR", overrides).per_transaction_minor == 500_000
    assert eur.record() == {"tier": "tier_0", "currency": "EUR", "source": "tenant", **EUR}


@pytest.mark.parametrize(("tier", "currency"), [("tier_0", "HUF"), ("tier_7", "EUR")])
def test_unconfigured_currency_or_tier_allows_nothing(tier: str, currency: str) -> None:
    limits = tier_limits(tier, currency)
    assert limits.source == "none" and all(limits.of(kind) == 0 for kind in LimitKind)
    with pytest.raises(LimitExceeded, match="allows nothing"):
        check_outgoing(limits, 1)
    with pytest.raises(LimitExceeded):
        balance_cap(limits, "acc_1", 1)


def test_outgoing_refusals_name_the_limit() -> None:
    limits = tier_limits("tier_0", "EUR", {"tier_0": {"EUR": EUR}})
    check_outgoing(limits, 100)
    with pytest.raises(LimitExceeded) as raised:
        check_outgoing(limits, 101)
    assert raised.value.status == 422 and raised.value.code == "limit_exceeded"
    assert raised.value.errors == [
        {
            "loc": ["body", "amount_minor"],
            "msg": "exceeds the per-transaction limit",
            "limit": "per_transaction",
            "tier": "tier_0",
            "currency": "EUR",
            "limit_minor": 100,
        }
    ]
    # An amount above a window on its own is refused before the write: the counter condition would admit it as
    # the first charge of the window.
    wide = tier_limits("tier_0", "EUR", {"tier_0": {"EUR": EUR | {"per_transaction_minor": None}}})
    with pytest.raises(LimitExceeded) as raised:
        check_outgoing(wide, 301)
    assert raised.value.errors and raised.value.errors[0]["limit"] == "daily"


@pytest.mark.parametrize(
    ("recorded_at", "day", "month"),
    [
        ("2026-11-30T23:59:59.999999Z", "2026-11-30", "2026-11"),
        ("2026-12-01T00:00:00.000000Z", "2026-12-01", "2026-12"),
        ("2028-02-29T12:00:00.000000Z", "2028-02-29", "2028-02"),
    ],
)
def test_charges_land_in_the_utc_calendar_windows(recorded_at: str, day: str, month: str) -> None:
    limits = tier_limits("tier_0", "EUR")
    daily, monthly = outgoing_charges(limits, "usr_1", 1_000, recorded_at)
    assert (daily.kind, daily.window, daily.period, daily.delta_minor, daily.limit_minor) == (
        LimitKind.DAILY,
        "day",
        day,
        1_000,
        250_000,
    )
    assert (monthly.window, monthly.period, monthly.limit_minor) == ("month", month, 500_000)
    assert daily.expires_at < monthly.expires_at
    assert (daily.refusal().errors or [{}])[0]["limit"] == "daily"


def test_no_counter_for_a_window_without_limit() -> None:
    limits = tier_limits("tier_0", "EUR", {"tier_0": {"EUR": EUR}})
    charges = outgoing_charges(limits, "usr_1", 50, "2026-11-22T10:00:00.000000Z")
    assert [c.window for c in charges] == ["day"]


def test_balance_cap() -> None:
    limits = tier_limits("tier_0", "EUR", {"tier_0": {"EUR": EUR}})
    cap = balance_cap(limits, "acc_1", 1_000)
    assert cap is not None and (cap.cap_minor, cap.credit_minor) == (1_000, 1_000)
    with pytest.raises(LimitExceeded) as raised:
        balance_cap(limits, "acc_1", 1_001)
    assert raised.value.errors and raised.value.errors[0]["limit"] == "balance_cap"
    uncapped = tier_limits("tier_0", "EUR", {"tier_0": {"EUR": EUR | {"balance_cap_minor": None}}})
    assert balance_cap(uncapped, "acc_1", 10**12) is None


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"tier_3": {"EUR": EUR}},
        {"tier_0": []},
        {"tier_0": {"eur": EUR}},
        {"tier_0": {"XAU": EUR}},
        {"tier_0": {"EUR": {"per_transaction_minor": 1}}},
        {"tier_0": {"EUR": EUR | {"extra_minor": 1}}},
        {"tier_0": {"EUR": EUR | {"daily_minor": -1}}},
        {"tier_0": {"EUR": EUR | {"daily_minor": 1.0}}},
        {"tier_0": {"EUR": EUR | {"daily_minor": True}}},
        {"tier_0": {"EUR": EUR | {"daily_minor": "100"}}},
        {"tier_0": {"EUR": EUR | {"daily_minor": 10**16}}},
    ],
)
def test_invalid_overrides_are_refused(raw: Any) -> None:
    with pytest.raises(ValidationFailed):
        check_overrides(raw)


def test_valid_overrides_pass_through() -> None:
    assert check_overrides(None) == {}
    assert check_overrides({"tier_2": {"JPY": EUR}}) == {"tier_2": {"JPY": EUR}}
