"""Money is integer minor units with ISO 4217 exponents; display strings never go through floats."""

import pytest

from moncore.domain.errors import InvariantViolation, ValidationFailed
from moncore.domain.money import MAX_AMOUNT_MINOR, check_amount_minor, currency_exponent, format_minor, is_currency


@pytest.mark.parametrize(("code", "exponent"), [("EUR", 2), ("JPY", 0), ("BHD", 3), ("GBP", 2), ("KWD", 3), ("CLP", 0)])
def test_exponents_come_from_iso_4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["eur", "EURO", "ZZZ", "", "XAU", "XXX", "E1R", 978])
def test_non_currencies_are_refused(code: object) -> None:
    assert not is_currency(code)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        currency_exponent(code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "EUR", "12.34"),
        (-1234, "EUR", "-12.34"),
        (5, "EUR", "0.05"),
        (-5, "EUR", "-0.05"),
        (0, "EUR", "0.00"),
        (1234, "JPY", "1234"),
        (1, "BHD", "0.001"),
        (12345, "BHD", "12.345"),
        (MAX_AMOUNT_MINOR, "EUR", "10000000000000.00"),
    ],
)
def test_format_minor(amount: int, currency: str, text: str) -> None:
    assert format_minor(amount, currency) == text


def test_format_refuses_floats() -> None:
    with pytest.raises(InvariantViolation):
        format_minor(12.5, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, "10", True, None, MAX_AMOUNT_MINOR + 1])
def test_check_amount_minor_refuses(bad: object) -> None:
    with pytest.raises(ValidationFailed):
        check_amount_minor(bad)


def test_check_amount_minor_accepts_bounds() -> None:
    assert check_amount_minor(1) == 1
    assert check_amount_minor(MAX_AMOUNT_MINOR) == MAX_AMOUNT_MINOR
