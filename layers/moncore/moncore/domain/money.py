"""Money in integer minor units (ISO 4217 exponents). No floats anywhere: amounts are `int`, display is a string.

`amount_minor` is the only representation that moves; `format_minor` renders the decimal string ("12.34") for responses.
"""

from __future__ import annotations

import re
from functools import cache

from iso4217 import Currency

from moncore.domain.errors import InvariantViolation, ValidationFailed

# 10^15 minor units is 10 trillion EUR: far above any single movement, and comfortably inside the exact-integer range of
# every JSON client (2^53) and of DynamoDB numbers (38 digits), so partners never lose precision.
MAX_AMOUNT_MINOR = 10**15
_CODE_RE = re.compile(r"^[A-Z]{3}$")
# Funds and precious metals have no minor unit (exponent N.A.) and are not money a wallet can hold.
_NOT_MONEY = frozenset({"XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA"})


@cache
def currency_exponent(code: str) -> int:
    """The ISO 4217 minor-unit exponent of `code`; ValidationFailed for anything that is not a usable currency."""
    if not isinstance(code, str) or not _CODE_RE.match(code) or code in _NOT_MONEY:
        raise ValidationFailed(f"'{code}' is not an ISO 4217 currency code", errors=[_err("currency", code)])
    try:
        exponent = Currency(code).exponent
    except ValueError:
        raise ValidationFailed(f"'{code}' is not an ISO 4217 currency code", errors=[_err("currency", code)]) from None
    if exponent is None:
        raise ValidationFailed(f"'{code}' has no minor unit", errors=[_err("currency", code)])
    return int(exponent)


def is_currency(code: str) -> bool:
    try:
        currency_exponent(code)
    except ValidationFailed:
        return False
    return True


def check_amount_minor(amount_minor: object, *, field: str = "amount_minor") -> int:
    """A positive integer within bounds, or ValidationFailed. bool is an int subclass in Python and is refused."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValidationFailed(f"{field} must be an integer in minor units", errors=[_err(field, amount_minor)])
    if amount_minor <= 0:
        raise ValidationFailed(f"{field} must be positive", errors=[_err(field, amount_minor)])
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValidationFailed(f"{field} must be at most {MAX_AMOUNT_MINOR}", errors=[_err(field, amount_minor)])
    return amount_minor


def stored_minor(value: object) -> int:
    """An amount read back from storage must still be an exact int (invariant checked after every read)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvariantViolation(f"stored amount is not an integer: {value!r}")
    return value


def format_minor(amount_minor: int, currency: str) -> str:
    """Decimal string of a signed minor-unit amount: format_minor(-1234, "EUR") == "-12.34", JPY has no point."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvariantViolation(f"amount must be int minor units, got {type(amount_minor).__name__}")
    exponent = currency_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def _err(field: str, value: object) -> dict[str, object]:
    return {"loc": ["body", field], "msg": "invalid value", "input": repr(value)[:64]}
