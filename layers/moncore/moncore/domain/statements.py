"""Normalised bank statement records (docs/reconciliation.md): what every statement format is turned into.

camt.053 / camt.054 (ISO 20022) and MT940 (SWIFT) describe the same things in different shapes; the parsers in
`moncore.reconciliation.statements` map each to these two records, so matching and reports never see a format.

- `StatementEntry`: one booked (or pending) movement on the bank account. `amount_minor` is the magnitude in integer
  minor units and `direction` says which way it went (CRDT = money into the account, DBIT = out), exactly as the bank
  states it; `signed_minor` is the same amount signed from the account's point of view.
- `StatementBalance`: one balance the statement declares (OPBD, CLBD, OPAV, CLAV, ...), `amount_minor` SIGNED (a debit
  balance is negative), because a balance is a position, not a movement.

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

# ISO 20022 amounts: at most 18 digits in all, at most 5 of them fraction digits; MT940 writes a comma instead of the
# point and may end on it ("100,"), which the parser normalises to the same shape before calling this.
_AMOUNT_RE = re.compile(r"^(\d{1,18})(?:\.(\d{0,5}))?$")


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
        return {"record": "balance", **asdict(self), "direction": self.direction}


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
    day = text.strip()[:10]
    try:
        return date.fromisoformat(day).isoformat() if len(day) == 10 else _bad_date(text, place)
    except ValueError:
        return _bad_date(text, place)


def _bad_date(text: str, place: str) -> str:
    raise StatementMalformed(f"{place}: {text.strip()!r} is not a date")
