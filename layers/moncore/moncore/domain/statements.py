"""Normalised bank statement records (docs/reconciliation.md): what every statement format is turned into.

camt.053 / camt.054 (ISO 20022) and MT940 (SWIFT) describe the same things in different shapes; the parsers in
`moncore.reconciliation.statements` map each to these two records, so matching and reports never see a format.

- `StatementEntry`: one booked (or pending) movement on the bank account. `amount_minor` is the magnitude in integer
  minor units and `direction` says which way it went (CRDT = money into the account, DBIT = out), exactly as the bank
  states it; `signed_minor` is the same amount signed from the account's point of view.
- `StatementBalance`: one balance the statement declares (OPBD, CLBD, OPAV, CLAV, ...), `amount_minor` SIGNED (a debit
  balance is negative), because a balance is a position, not a movement. Its JSON (`to_dict`, what `moncore statements
  parse` prints) has the entries' shape: `amount_minor` the magnitude, `direction`, `signed_amount_minor`.

Amounts arrive as decimal text ("8.85" in camt, "8,85" in MT940). `amount_minor_from_text` turns that text into minor
units by string arithmetic alone (no float, no Decimal): the text must have at most as many fraction digits as the
currency's ISO 4217 exponent, as ISO 20022's CurrencyAmount rule demands; anything else is a malformed statement, never
a silent rounding.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal

from moncore.domain.errors import StatementMalformed, ValidationFailed
from moncore.domain.money import MAX_AMOUNT_MINOR, currency_exponent

Direction = Literal["CRDT", "DBIT"]
DIRECTIONS: frozenset[str] = frozenset({"CRDT", "DBIT"})

# A plain unsigned decimal ("8.85", "100", "100."); MT940 writes a comma instead of the point and may end on it
# ("100,"), which the parser normalises to this shape before calling. The digit limits (ISO 20022: 18 digits in all)
# are checked after the match, so an amount with too many decimals is named as such, not as "not a number".
_AMOUNT_RE = re.compile(r"^([0-9]+)(?:\.([0-9]*))?$")  # ASCII digits only: int() would take any script's
MAX_AMOUNT_DIGITS = 18
# The date part of an xs:date ("2014-12-31", "2014-12-31+01:00") or xs:dateTime ("2014-12-31T18:43:50Z").
_DATE_RE = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:$|[TZ+-])")


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One movement on the statement's account. `place` says where in the file it came from (e.g. "line 41 Stmt[2]
    Ntry[3]" or "line 12 :61:"), so a report can point an operator at the source."""

    statement_id: str
    account: str | None  # IBAN, else the other account id the bank uses
    booking_date: str | None  # YYYY-MM-DD; camt.054 notifications may omit it
    value_date: str | None
    amount_minor: int  # magnitude, >= 0
    currency: str
    direction: Direction
    reference: str | None  # the reference matching uses (see reconciliation.statements for the precedence)
    counterparty: str | None  # name of the other party (the debtor of a credit, the creditor of a debit)
    counterparty_account: str | None = None
    end_to_end_id: str | None = None
    account_servicer_ref: str | None = None  # the bank's own id of the entry (camt AcctSvcrRef, MT940 //bank ref)
    remittance: str | None = None
    status: str = "BOOK"  # BOOK, PDNG, INFO (camt Sts); MT940 lines are always booked
    reversal: bool = False
    bank_transaction_code: str | None = None
    source: str = ""  # message type and version, e.g. "camt.053.001.02" or "MT940"
    place: str = ""
    entry_ref: str = ""  # stable id of the line: "<statement_id>#<n>" (".<k>" for the k-th part of a split batch)

    @property
    def signed_minor(self) -> int:
        """The amount from the account's point of view: credits positive, debits negative."""
        return self.amount_minor if self.direction == "CRDT" else -self.amount_minor

    def to_dict(self) -> dict[str, Any]:
        return {"record": "entry", **asdict(self), "signed_amount_minor": self.signed_minor}


@dataclass(frozen=True, slots=True)
class StatementBalance:
    """A balance the statement declares. `type` is the ISO 20022 balance type code (MT940 tags are mapped: 60F -> OPBD,
    62F -> CLBD, 60M/62M -> ITBD, 64 -> CLAV, 65 -> FWAV)."""

    statement_id: str
    account: str | None
    type: str
    date: str | None
    amount_minor: int  # signed: a debit (overdrawn) balance is negative
    currency: str
    source: str = ""
    place: str = ""

    @property
    def direction(self) -> Direction:
        return "DBIT" if self.amount_minor < 0 else "CRDT"

    def to_dict(self) -> dict[str, Any]:
        """The shape of an entry's dict: `amount_minor` the magnitude, `direction` its side, `signed_amount_minor`
        the position (so no reader negates a debit balance twice)."""
        return {
            "record": "balance",
            **asdict(self),
            "amount_minor": abs(self.amount_minor),
            "direction": self.direction,
            "signed_amount_minor": self.amount_minor,
        }


StatementRecord = StatementEntry | StatementBalance


def check_currency(code: str | None, *, place: str) -> str:
    """The ISO 4217 code, or StatementMalformed naming the place."""
    if not code:
        raise StatementMalformed(f"{place}: amount has no currency")
    try:
        currency_exponent(code)
    except ValidationFailed:
        raise StatementMalformed(f"{place}: unknown currency {code!r}") from None
    return code


def amount_minor_from_text(text: str | None, currency: str, *, place: str) -> int:
    """Minor units of a non-negative decimal amount text ("8.85" EUR -> 885, "2700" JPY -> 2700).

    Refused (StatementMalformed naming `place`): missing or empty text, a sign, exponent notation, more fraction digits
    than the currency has (ISO 4217; "8.855" EUR, "10.0" JPY), more than 18 digits, an amount above MAX_AMOUNT_MINOR.
    """
    currency = check_currency(currency, place=place)
    if text is None or not text.strip():
        raise StatementMalformed(f"{place}: missing amount")
    raw = text.strip()
    found = _AMOUNT_RE.match(raw)
    if found is None:
        raise StatementMalformed(f"{place}: amount {raw!r} is not a plain decimal number")
    whole, fraction = found.group(1), found.group(2) or ""
    if len(whole) + len(fraction) > MAX_AMOUNT_DIGITS:
        raise StatementMalformed(f"{place}: amount {raw!r} has more than {MAX_AMOUNT_DIGITS} digits")
    exponent = currency_exponent(currency)
    if len(fraction) > exponent:
        raise StatementMalformed(f"{place}: amount {raw!r} has {len(fraction)} decimals, {currency} allows {exponent}")
    amount_minor = int(whole + fraction.ljust(exponent, "0"))
    if amount_minor > MAX_AMOUNT_MINOR:
        raise StatementMalformed(f"{place}: amount {raw!r} {currency} is above the kernel's maximum")
    return amount_minor


def iso_date(text: str | None, *, place: str, required: bool = False) -> str | None:
    """YYYY-MM-DD of an ISO date or date-time text (the date part of a DtTm as the bank wrote it), else None; a text
    that is not a valid date raises StatementMalformed naming the place."""
    if text is None or not text.strip():
        if required:
            raise StatementMalformed(f"{place}: missing date")
        return None
    found = _DATE_RE.match(text.strip())
    if found is None:
        return _bad_date(text, place)
    try:
        return date.fromisoformat(found.group(1)).isoformat()
    except ValueError:
        return _bad_date(text, place)


def _bad_date(text: str, place: str) -> str:
    raise StatementMalformed(f"{place}: {text.strip()!r} is not a date")
