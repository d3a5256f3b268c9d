"""EMVCo merchant-presented QR payloads (EMV QR Code Specification for Payment Systems, Merchant-Presented Mode,
"EMV QRCPS MPM"): encoder, parser/validator and CRC. Pure, no I/O (see docs/providers.md, "QR payments").

A payload is a string of data objects, each `ID (2 digits) | length (2 digits) | value (length characters)`; a few
IDs are templates whose value is itself such a string. The objects MonCore writes, in this order:

| ID | object | MonCore writes |
|---|---|---|
| 00 | payload format indicator | "01" (first object of every payload) |
| 01 | point of initiation method | "12": dynamic, one payment per payload ("11" static is parsed, never written) |
| 26 | merchant account information template | 00 GUI "com.moncore", 01 the payment request id |
| 52 | merchant category code (ISO 18245) | the merchant's 4 digits |
| 53 | transaction currency | ISO 4217 numeric, 3 digits ("978" EUR) |
| 54 | transaction amount | the decimal amount ("12.34", JPY "1234"), at most 13 characters |
| 58 | country code | ISO 3166-1 alpha-2 of the merchant |
| 59 | merchant name | 1-25 characters |
| 60 | merchant city | 1-15 characters |
| 62 | additional data field template | 05 reference label (1-25 characters), when the request has a reference |
| 63 | CRC | 4 upper-case hex digits (last object of every payload) |

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; check value
0x29B1 for "123456789") over the UTF-8 bytes of the whole payload up to and including "6304" (the CRC's own ID and
length). Lengths count characters, not bytes (the EMVCo example's alternate-language template holds Chinese
characters). MonCore writes printable ASCII only; the parser accepts what the specification allows.

The CRC detects accidents (a misread or truncated code), not fraud: anyone can recompute it. A payment therefore never
trusts a payload's amount: the payload must be byte-for-byte the one MonCore issued for the request it names, and the
amount paid is the stored request's (moncore.ledger.qr).

Errors: QrPayloadInvalid (422 `qr_payload_invalid`, naming the object) for anything that does not parse or validate;
ValidationFailed for values the encoder cannot write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from iso4217 import Currency

from moncore.domain.errors import QrPayloadInvalid, ValidationFailed
from moncore.domain.money import currency_exponent, format_minor

MONCORE_GUI = "com.moncore"  # globally unique identifier of MonCore's merchant account template (reverse domain)
MERCHANT_ACCOUNT_TAG = "26"  # the first template ID of the 26-51 range open to any payment system
DYNAMIC = "12"  # point of initiation: a new payload per payment
STATIC = "11"  # point of initiation: the same payload for many payments
MAX_PAYLOAD_CHARS = 512  # EMV QRCPS MPM: a payload is at most 512 characters
MAX_AMOUNT_CHARS = 13
MAX_NAME_CHARS = 25
MAX_CITY_CHARS = 15
MAX_REFERENCE_CHARS = 25
CRC_TAG_AND_LENGTH = "6304"

_TWO_DIGITS = re.compile(r"^[0-9]{2}$")
_AMOUNT = re.compile(r"^(?=.{1,13}$)[0-9]+(\.[0-9]*)?$")
_MCC = re.compile(r"^[0-9]{4}$")
_NUMERIC_CURRENCY = re.compile(r"^[0-9]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_HEX4 = re.compile(r"^[0-9A-F]{4}$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no final XOR. crc16_ccitt_false(b"123456789") ==
    0x29B1 (the catalogue's check value)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def payload_crc(text_up_to_crc_value: str) -> str:
    """The CRC object's value for a payload that ends with "6304" (4 upper-case hex digits)."""
    return f"{crc16_ccitt_false(text_up_to_crc_value.encode('utf-8')):04X}"


# ------------------------------------------------------------------------------------------------------- TLV
def tlv(tag: str, value: str) -> str:
    """One data object. ValidationFailed when the value does not fit a two-digit length."""
    if not _TWO_DIGITS.match(tag):
        raise ValidationFailed(f"EMV QR object id {tag!r} is not two digits")
    if not 1 <= len(value) <= 99:
        raise ValidationFailed(f"EMV QR object {tag} must hold 1-99 characters, not {len(value)}")
    return f"{tag}{len(value):02d}{value}"


def parse_objects(text: str, *, where: str = "payload") -> list[tuple[str, str]]:
    """The data objects of `text` in order: [(id, value), ...]. QrPayloadInvalid on a truncated or malformed object
    or a repeated id."""
    objects: list[tuple[str, str]] = []
    seen: set[str] = set()
    position = 0
    while position < len(text):
        head = text[position : position + 4]
        if len(head) < 4 or not head.isascii() or not head.isdigit():
            raise _invalid(where, f"malformed object header {head!r} at character {position}")
        tag, length = head[:2], int(head[2:])
        value = text[position + 4 : position + 4 + length]
        if length == 0 or len(value) != length:
            raise _invalid(where, f"object {tag} at character {position} announces {length} characters")
        if tag in seen:
            raise _invalid(where, f"object {tag} appears twice")
        seen.add(tag)
        objects.append((tag, value))
        position += 4 + length
    return objects


# ------------------------------------------------------------------------------------------------------- parse
@dataclass(frozen=True, slots=True)
class MerchantPayload:
    """A parsed and validated merchant-presented payload. `templates` holds the merchant account information
    templates 26-51 (sub-objects by id), `additional` the additional data field template 62."""

    point_of_initiation: str | None
    merchant_category_code: str
    currency_numeric: str
    amount: str | None  # the decimal text of object 54 as written ("23.72"), absent for an open amount
    country: str
    merchant_name: str
    merchant_city: str
    crc: str
    objects: tuple[tuple[str, str], ...]
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    additional: dict[str, str] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return self.point_of_initiation == DYNAMIC

    @property
    def reference(self) -> str | None:
        """The reference label (62, sub-object 05)."""
        return self.additional.get("05")

    def request_id(self, gui: str = MONCORE_GUI) -> str | None:
        """The payment request id in the merchant account template whose GUI is `gui` (sub-object 01)."""
        for template in self.templates.values():
            if template.get("00", "").lower() == gui.lower():
                return template.get("01")
        return None

    def currency(self) -> str:
        """The ISO 4217 alpha code of object 53; QrPayloadInvalid when no usable currency has that number."""
        code = currency_from_numeric(self.currency_numeric)
        if code is None:
            raise _invalid("53", f"{self.currency_numeric} is not an ISO 4217 currency with a minor unit")
        return code

    def amount_minor(self) -> int | None:
        """Object 54 in minor units of object 53's currency (exact: text arithmetic, never a float); QrPayloadInvalid
        when it has more decimals than the currency's minor unit."""
        if self.amount is None:
            return None
        exponent = currency_exponent(self.currency())
        whole, _, fraction = self.amount.partition(".")
        fraction = fraction.rstrip("0")
        if len(fraction) > exponent:
            raise _invalid("54", f"amount {self.amount} has more decimals than {self.currency()} allows")
        minor: int = int(whole or "0") * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
        return minor


def parse_payload(text: object) -> MerchantPayload:
    """Parse and validate a merchant-presented payload: structure, the CRC, then every mandatory object's format.
    QrPayloadInvalid names the first problem found."""
    if not isinstance(text, str) or not text:
        raise _invalid("payload", "a payload is a non-empty string")
    if len(text) > MAX_PAYLOAD_CHARS:
        raise _invalid("payload", f"a payload holds at most {MAX_PAYLOAD_CHARS} characters")
    objects = parse_objects(text)
    tags = [tag for tag, _ in objects]
    if tags[0] != "00" or objects[0][1] != "01":
        raise _invalid("00", "the payload format indicator 00 = 01 must come first")
    if tags[-1] != "63" or text[-8:-4] != CRC_TAG_AND_LENGTH:
        raise _invalid("63", "the CRC 63 (4 characters) must come last")
    crc = objects[-1][1]
    if not _HEX4.match(crc.upper()):
        raise _invalid("63", f"CRC {crc!r} is not 4 hex digits")
    expected = payload_crc(text[:-4])
    if crc.upper() != expected:
        raise _invalid("63", "CRC mismatch: the payload was altered or misread")
    values = dict(objects)
    point = values.get("01")
    if point is not None and point not in {STATIC, DYNAMIC}:
        raise _invalid("01", f"point of initiation {point!r} is neither 11 (static) nor 12 (dynamic)")
    if not any("02" <= tag <= "51" for tag in tags):
        raise _invalid("26", "no merchant account information (objects 02-51)")
    templates = {tag: dict(parse_objects(value, where=tag)) for tag, value in objects if "26" <= tag <= "51"}
    for tag, template in templates.items():
        if "00" not in template:
            raise _invalid(tag, "a merchant account information template needs its globally unique identifier 00")
    for tag, pattern, name in (
        ("52", _MCC, "merchant category code: 4 digits"),
        ("53", _NUMERIC_CURRENCY, "transaction currency: ISO 4217 numeric, 3 digits"),
        ("58", _COUNTRY, "country code: ISO 3166-1 alpha-2"),
    ):
        if tag not in values or not pattern.match(values[tag]):
            raise _invalid(tag, f"missing or malformed {name}")
    amount = values.get("54")
    if amount is not None and (not _AMOUNT.match(amount) or not any(c.isdigit() and c != "0" for c in amount)):
        raise _invalid("54", f"transaction amount {amount!r} is not a positive decimal of at most 13 characters")
    for tag, limit in (("59", MAX_NAME_CHARS), ("60", MAX_CITY_CHARS)):
        if tag not in values or len(values[tag]) > limit:
            raise _invalid(tag, f"object {tag} is required, at most {limit} characters")
    additional = dict(parse_objects(values["62"], where="62")) if "62" in values else {}
    return MerchantPayload(
        point_of_initiation=point,
        merchant_category_code=values["52"],
        currency_numeric=values["53"],
        amount=amount,
        country=values["58"],
        merchant_name=values["59"],
        merchant_city=values["60"],
        crc=crc.upper(),
        objects=tuple(objects),
        templates=templates,
        additional=additional,
    )


# ------------------------------------------------------------------------------------------------------- encode
@dataclass(frozen=True, slots=True)
class PaymentRequestCode:
    """What a dynamic MonCore payload says: which request, how much of which currency, to which merchant."""

    request_id: str
    amount_minor: int
    currency: str
    merchant_name: str
    merchant_city: str
    merchant_category_code: str
    country: str
    reference: str | None = None


def encode_payment_request(code: PaymentRequestCode) -> str:
    """The dynamic merchant-presented payload of a payment request (objects as in the module docstring), CRC last.
    ValidationFailed when a value cannot be written (too long, not printable ASCII, amount over 13 characters)."""
    amount = format_minor(code.amount_minor, code.currency)
    if code.amount_minor <= 0 or len(amount) > MAX_AMOUNT_CHARS:
        raise ValidationFailed(
            f"amount {amount} {code.currency} cannot be written in an EMV QR code (at most {MAX_AMOUNT_CHARS} "
            "characters)",
            errors=[{"loc": ["body", "amount_minor"], "msg": "too large for an EMV QR code"}],
        )
    _check_text("merchant.name", code.merchant_name, MAX_NAME_CHARS)
    _check_text("merchant.city", code.merchant_city, MAX_CITY_CHARS)
    if not _MCC.match(code.merchant_category_code):
        raise ValidationFailed("merchant category code must be 4 digits")
    if not _COUNTRY.match(code.country):
        raise ValidationFailed(f"country {code.country!r} is not ISO 3166-1 alpha-2")
    _check_text("id", code.request_id, 99 - 4 - len(MONCORE_GUI) - 4)
    merchant_account = tlv("00", MONCORE_GUI) + tlv("01", code.request_id)
    parts = [
        tlv("00", "01"),
        tlv("01", DYNAMIC),
        tlv(MERCHANT_ACCOUNT_TAG, merchant_account),
        tlv("52", code.merchant_category_code),
        tlv("53", currency_numeric(code.currency)),
        tlv("54", amount),
        tlv("58", code.country),
        tlv("59", code.merchant_name),
        tlv("60", code.merchant_city),
    ]
    if code.reference is not None:
        _check_text("reference", code.reference, MAX_REFERENCE_CHARS)
        parts.append(tlv("62", tlv("05", code.reference)))
    body = "".join(parts) + CRC_TAG_AND_LENGTH
    return body + payload_crc(body)


def _check_text(name: str, value: str, limit: int) -> None:
    if not 1 <= len(value) <= limit or not _PRINTABLE_ASCII.match(value):
        raise ValidationFailed(
            f"{name} must be 1-{limit} printable ASCII characters for an EMV QR code",
            errors=[{"loc": ["body", *name.split(".")], "msg": f"1-{limit} printable ASCII characters"}],
        )


# ------------------------------------------------------------------------------------------------------- currency
def currency_numeric(code: str) -> str:
    """ISO 4217 numeric code, 3 digits ("978" for EUR, "392" for JPY, "048" for BHD)."""
    currency_exponent(code)  # ValidationFailed for anything that is not a usable currency
    return f"{Currency(code).number:03d}"


@cache
def currency_from_numeric(number: str) -> str | None:
    """The alpha code of a usable ISO 4217 currency with this numeric code, or None."""
    for currency in Currency:
        if f"{currency.number:03d}" == number:
            try:
                currency_exponent(currency.code)
            except ValidationFailed:
                continue
            return currency.code
    return None


def _invalid(where: str, detail: str) -> QrPayloadInvalid:
    return QrPayloadInvalid(
        f"invalid EMV QR payload: {detail}",
        errors=[{"loc": ["body", "payload"], "msg": detail, "object": where}],
    )
