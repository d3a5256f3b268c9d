"""FX arithmetic: Decimal from the rate string only, rounded down to the target minor unit (JPY 0, EUR 2, BHD 3
decimals), never zero, never a float; the sandbox provider's rates and quotes are deterministic."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest

from moncore.domain.errors import InvariantViolation, ProviderUnavailable, ValidationFailed
from moncore.domain.fx import (
    ROUNDING_RULE,
    Quote,
    check_rate,
    conversion_legs,
    convert_minor,
    exact_target_minor,
    plan_conversion,
)
from moncore.domain.money import MAX_AMOUNT_MINOR, currency_exponent
from moncore.domain.transactions import AccountKind, AccountRef
from moncore.providers.fx import SANDBOX_RATES, QuoteRequest, SandboxFx, fx_provider

NOW = "2026-01-01T00:00:00.000000Z"
LATER = "2026-01-01T00:00:30.000000Z"

# The sandbox rates the worked examples of docs/fx.md use.
EUR_JPY, JPY_EUR = "162.35", "0.006159531875"
EUR_BHD, BHD_EUR = "0.4090", "2.444987775"
JPY_BHD, BHD_JPY = "0.002519248536", "396.9437652"


@pytest.mark.parametrize(
    ("amount", "src", "dst", "rate", "expected"),
    [
        # EUR (2) -> JPY (0)
        (10_000, "EUR", "JPY", EUR_JPY, 16_235),  # 100.00 EUR -> 16235 JPY, exact
        (1_234, "EUR", "JPY", EUR_JPY, 2_003),  # 12.34 EUR -> 2003.399 JPY
        (1, "EUR", "JPY", EUR_JPY, 1),  # 0.01 EUR -> 1.6235 JPY
        (2, "EUR", "JPY", "150", 3),  # exact at a whole rate
        # JPY (0) -> EUR (2)
        (1_000, "JPY", "EUR", JPY_EUR, 615),  # 1000 JPY -> 6.159531875 EUR
        (2, "JPY", "EUR", JPY_EUR, 1),  # 1.2319... cents
        (100, "JPY", "EUR", "0.01", 100),  # exact
        # EUR (2) -> BHD (3)
        (10_000, "EUR", "BHD", EUR_BHD, 40_900),  # 100.00 EUR -> 40.900 BHD, exact
        (1, "EUR", "BHD", EUR_BHD, 4),  # 0.01 EUR -> 4.09 fils
        (333, "EUR", "BHD", EUR_BHD, 1_361),  # 3.33 EUR -> 1361.97 fils
        # BHD (3) -> EUR (2)
        (1_000, "BHD", "EUR", BHD_EUR, 244),  # 1.000 BHD -> 244.4987775 cents
        (5, "BHD", "EUR", BHD_EUR, 1),  # 5 fils -> 1.22 cents
        (2_000, "BHD", "EUR", "2.5", 500),  # exact
        # JPY (0) <-> BHD (3)
        (1_000, "JPY", "BHD", JPY_BHD, 2_519),  # 1000 JPY -> 2519.248536 fils
        (1, "JPY", "BHD", JPY_BHD, 2),  # 2.519 fils
        (10, "BHD", "JPY", BHD_JPY, 3),  # 0.010 BHD -> 3.969 JPY
        (1_000, "BHD", "JPY", BHD_JPY, 396),  # 1.000 BHD -> 396.94 JPY
        (4, "BHD", "JPY", "250", 1),  # exact: 0.004 BHD x 250 = 1 JPY
    ],
)
def test_conversion_rounds_down_to_the_target_minor_unit(
    amount: int, src: str, dst: str, rate: str, expected: int
) -> None:
    got = convert_minor(amount, src, dst, rate)
    assert got == expected and type(got) is int
    exact = Fraction(amount) * Fraction(rate) * Fraction(10) ** (currency_exponent(dst) - currency_exponent(src))
    assert got <= exact < got + 1  # never more than was paid for, never a whole minor unit kept


@pytest.mark.parametrize(
    ("amount", "src", "dst", "rate"),
    [
        (1, "JPY", "EUR", JPY_EUR),  # 0.6159 cents
        (1, "BHD", "EUR", BHD_EUR),  # 0.2444 cents
        (4, "BHD", "EUR", BHD_EUR),  # 0.978 cents: still below one cent
        (2, "BHD", "JPY", BHD_JPY),  # 0.79 JPY
        (1, "EUR", "JPY", "0.5"),  # 0.005 JPY
    ],
)
def test_amount_that_would_credit_zero_is_refused(amount: int, src: str, dst: str, rate: str) -> None:
    with pytest.raises(ValidationFailed, match="amount too small to convert") as refused:
        convert_minor(amount, src, dst, rate)
    assert refused.value.status == 422 and refused.value.code == "validation_error"


def test_huge_amounts_stay_exact_ints() -> None:
    got = convert_minor(MAX_AMOUNT_MINOR, "EUR", "JPY", EUR_JPY)
    assert got == 1_623_500_000_000_000 and type(got) is int
    rate = "0.123456789012345678"  # 18 fraction digits: a float would lose the tail
    got = convert_minor(MAX_AMOUNT_MINOR - 1, "JPY", "BHD", rate)
    assert got == floor(Fraction(MAX_AMOUNT_MINOR - 1) * Fraction(rate) * 1000)
    assert got != int((MAX_AMOUNT_MINOR - 1) * float(rate) * 1000)
    assert convert_minor(MAX_AMOUNT_MINOR, "BHD", "JPY", "999999999999") == 999_999_999_999 * 10**12


def test_agrees_with_exact_rational_arithmetic_on_random_cases() -> None:
    rng = random.Random(4217)
    currencies = ["JPY", "EUR", "BHD", "USD", "KWD", "CLP"]
    for _ in range(2_000):
        src, dst = rng.sample(currencies, 2)
        amount = rng.choice([rng.randint(1, 1_000), rng.randint(1, MAX_AMOUNT_MINOR)])
        rate = f"{rng.randint(0, 999)}.{rng.randint(0, 10 ** rng.randint(1, 18) - 1)}"
        rate = rate if Decimal(rate) > 0 else "1.5"
        exact = Fraction(amount) * Fraction(rate) * Fraction(10) ** (currency_exponent(dst) - currency_exponent(src))
        assert Fraction(exact_target_minor(amount, src, dst, rate)) == exact
        if exact < 1:
            with pytest.raises(ValidationFailed):
                convert_minor(amount, src, dst, rate)
        else:
            assert convert_minor(amount, src, dst, rate) == floor(exact)


def test_round_trip_never_creates_money() -> None:
    sandbox = SandboxFx()
    for src, dst in [("EUR", "JPY"), ("EUR", "BHD"), ("JPY", "BHD"), ("USD", "JPY"), ("GBP", "BHD")]:
        there, back = sandbox.rate(src, dst), sandbox.rate(dst, src)
        for amount in (1_000, 12_345, 999_999, 10**12):
            converted = convert_minor(amount, src, dst, there)
            assert convert_minor(converted, dst, src, back) <= amount


@pytest.mark.parametrize("rate", [162.35, 1, Decimal("162.35"), Fraction(1, 3), None, b"1.5"])
def test_a_rate_that_is_not_a_string_is_refused(rate: object) -> None:
    with pytest.raises(InvariantViolation, match="decimal string"):
        convert_minor(100, "EUR", "JPY", rate)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rate",
    [
        "",
        "0",
        "0.0",
        "0.000000000000000000",
        "-1.5",
        "+1.5",
        "1e3",
        "1E-3",
        "NaN",
        "Infinity",
        "inf",
        " 1.5",
        "1.5 ",
        "1.",
        ".5",
        "01.5",
        "1,5",
        "1_000",
        "0x10",
        "\u0661.\u0665",  # Arabic-Indic digits: Decimal() would accept them, the rate pattern does not
        "1" * 13,  # 13 integer digits
        "0." + "1" * 19,  # 19 fraction digits
    ],
)
def test_malformed_rate_strings_are_refused(rate: str) -> None:
    with pytest.raises(ValidationFailed):
        check_rate(rate)
    with pytest.raises(ValidationFailed):
        convert_minor(100, "EUR", "JPY", rate)


@pytest.mark.parametrize("rate", ["1", "1.000", "9" * 12, "0." + "0" * 17 + "1", "999999999999.999999999999999999"])
def test_rates_within_bounds_are_exact(rate: str) -> None:
    assert check_rate(rate) == Decimal(rate) and format(check_rate(rate), "f") == rate


@pytest.mark.parametrize(
    ("amount", "src", "dst"),
    [(1.5, "EUR", "JPY"), (100.0, "EUR", "JPY"), (True, "EUR", "JPY"), (0, "EUR", "JPY"), (-5, "EUR", "JPY")],
)
def test_amount_must_be_a_positive_int(amount: object, src: str, dst: str) -> None:
    with pytest.raises(ValidationFailed):
        convert_minor(amount, src, dst, EUR_JPY)  # type: ignore[arg-type]


@pytest.mark.parametrize(("src", "dst"), [("EUR", "EUR"), ("EUR", "XAU"), ("eur", "JPY"), ("EUR", "ZZZ")])
def test_currencies_must_be_two_different_iso_currencies(src: str, dst: str) -> None:
    with pytest.raises(ValidationFailed):
        convert_minor(100, src, dst, "1.5")


# ---------------------------------------------------------------- quotes, plans, legs
def quote(rate: str = EUR_JPY, base: str = "EUR", quote_ccy: str = "JPY", expires_at: str = LATER) -> Quote:
    return Quote("q_1", "sandbox_fx", base, quote_ccy, rate, expires_at)


def test_quote_refuses_floats_and_bad_pairs() -> None:
    with pytest.raises(InvariantViolation):
        quote(rate=162.35)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        quote(rate="-1")
    with pytest.raises(ValidationFailed):
        quote(quote_ccy="EUR")
    with pytest.raises(InvariantViolation):
        Quote("", "sandbox_fx", "EUR", "JPY", "1.5", LATER)


def test_plan_records_rate_amounts_rounding_and_remainder() -> None:
    plan = plan_conversion(quote(), 1_234, now=NOW)
    assert plan.attribution() == {
        "rate": "162.35",
        "pair": "EUR/JPY",
        "quote_id": "q_1",
        "provider": "sandbox_fx",
        "quote_expires_at": LATER,
        "source_amount_minor": 1_234,
        "source_currency": "EUR",
        "target_amount_minor": 2_003,
        "target_currency": "JPY",
        "rounding": ROUNDING_RULE,
        "exact_target_minor": "2003.399",
        "remainder_target_minor": "0.399",
    }
    assert ROUNDING_RULE == "round_down"
    exact = plan_conversion(quote(rate="0.4090", quote_ccy="BHD"), 10_000, now=NOW)
    assert (exact.target_amount_minor, exact.exact_target_minor, exact.remainder_target_minor) == (40_900, "40900", "0")


def test_plan_refuses_expired_quotes_and_results_beyond_the_maximum() -> None:
    with pytest.raises(ProviderUnavailable) as expired:
        plan_conversion(quote(expires_at=NOW), 100, now=NOW)
    assert expired.value.retryable
    with pytest.raises(ValidationFailed, match="exceeds"):
        plan_conversion(quote(), MAX_AMOUNT_MINOR, now=NOW)  # 1.6235e15 JPY > MAX_AMOUNT_MINOR
    with pytest.raises(ValidationFailed, match="too small"):
        plan_conversion(quote(rate=JPY_EUR, base="JPY", quote_ccy="EUR"), 1, now=NOW)


USER_EUR = AccountRef("acc_eur", "EUR", AccountKind.USER, "usr_1")
USER_JPY = AccountRef("acc_jpy", "JPY", AccountKind.USER, "usr_1")
POS_EUR = AccountRef("sys_fx_position_eur", "EUR", AccountKind.SYSTEM, shards=4)
POS_JPY = AccountRef("sys_fx_position_jpy", "JPY", AccountKind.SYSTEM, shards=4)


def test_legs_go_through_the_positions_and_sum_to_zero_per_currency() -> None:
    plan = plan_conversion(quote(), 1_234, now=NOW)
    legs = conversion_legs(plan, source=USER_EUR, target=USER_JPY, source_position=POS_EUR, target_position=POS_JPY)
    assert [(leg.account.account_id, leg.currency, leg.amount_minor, leg.phase.value) for leg in legs] == [
        ("acc_eur", "EUR", -1_234, "SETTLED"),
        ("sys_fx_position_eur", "EUR", 1_234, "SETTLED"),
        ("sys_fx_position_jpy", "JPY", -2_003, "SETTLED"),
        ("acc_jpy", "JPY", 2_003, "SETTLED"),
    ]
    assert all(leg.fx == plan.attribution() for leg in legs)


def test_legs_refuse_accounts_in_the_wrong_role_or_currency() -> None:
    plan = plan_conversion(quote(), 1_234, now=NOW)
    with pytest.raises(InvariantViolation):
        conversion_legs(plan, source=USER_JPY, target=USER_EUR, source_position=POS_EUR, target_position=POS_JPY)
    with pytest.raises(InvariantViolation):
        conversion_legs(plan, source=USER_EUR, target=USER_JPY, source_position=USER_EUR, target_position=POS_JPY)
    with pytest.raises(InvariantViolation):
        conversion_legs(plan, source=USER_EUR, target=POS_JPY, source_position=POS_EUR, target_position=POS_JPY)


# ---------------------------------------------------------------- sandbox provider
def test_sandbox_rates_table_inverses_and_crosses() -> None:
    sandbox = SandboxFx()
    assert sandbox.rate("EUR", "JPY") == "162.35" and sandbox.rate("USD", "JPY") == "149.50"
    assert sandbox.rate("JPY", "EUR") == JPY_EUR  # 1 / 162.35, 10 significant digits, rounded down
    assert sandbox.rate("BHD", "EUR") == BHD_EUR
    assert sandbox.rate("JPY", "BHD") == JPY_BHD  # (1 / 162.35) x 0.4090 through EUR
    assert sandbox.rate("BHD", "JPY") == BHD_JPY
    currencies = sorted({c for pair in SANDBOX_RATES for c in pair})
    for src in currencies:
        for dst in currencies:
            if src != dst:
                rate = sandbox.rate(src, dst)
                assert check_rate(rate) > 0 and rate == sandbox.rate(src, dst)
                assert Fraction(rate) <= _reference_rate(src, dst)  # derived rates are rounded down, never up
    with pytest.raises(ValidationFailed, match="no FX rate"):
        sandbox.rate("EUR", "KWD")


def _reference_rate(src: str, dst: str) -> Fraction:
    table = {pair: Fraction(rate) for pair, rate in SANDBOX_RATES.items()}

    def direct(a: str, b: str) -> Fraction | None:
        if a == b:
            return Fraction(1)
        if (a, b) in table:
            return table[(a, b)]
        return 1 / table[(b, a)] if (b, a) in table else None

    found = direct(src, dst)
    if found is not None:
        return found
    via_a, via_b = direct(src, "EUR"), direct("EUR", dst)
    assert via_a is not None and via_b is not None
    return via_a * via_b


def test_sandbox_quote_ids_derive_from_the_request() -> None:
    sandbox = fx_provider("sandbox_fx")
    request = QuoteRequest("ten_1", "EUR", "JPY", 1_000, "txn_1")
    first, again = sandbox.quote(request), sandbox.quote(request)
    assert first.quote_id == again.quote_id and first.rate == again.rate == "162.35"
    assert (first.provider, first.base_currency, first.quote_currency) == ("sandbox_fx", "EUR", "JPY")
    others = [
        QuoteRequest("ten_2", "EUR", "JPY", 1_000, "txn_1"),
        QuoteRequest("ten_1", "EUR", "JPY", 1_001, "txn_1"),
        QuoteRequest("ten_1", "EUR", "JPY", 1_000, "txn_2"),
        QuoteRequest("ten_1", "EUR", "BHD", 1_000, "txn_1"),
    ]
    assert len({first.quote_id, *(sandbox.quote(r).quote_id for r in others)}) == 5
    with pytest.raises(ValidationFailed):
        fx_provider("no_such_provider")
