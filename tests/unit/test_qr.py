"""EMVCo merchant-presented QR payloads (moncore.domain.qr): the CRC against its catalogue check value and published
payloads, the parser on the EMVCo specification's own example, and round trips of what MonCore writes."""

from __future__ import annotations

import pytest

from moncore.domain.errors import QrPayloadInvalid, ValidationFailed
from moncore.domain.qr import (
    MONCORE_GUI,
    PaymentRequestCode,
    crc16_ccitt_false,
    currency_from_numeric,
    currency_numeric,
    encode_payment_request,
    parse_objects,
    parse_payload,
    payload_crc,
    tlv,
)

# The example payload of the EMV QR Code Specification for Payment Systems, Merchant-Presented Mode (EMVCo, v1.0,
# appendix "Example"): two merchant account templates (29, 31), an alternate-language template 64 in Chinese whose
# lengths count characters, objects out of numeric order, an unreserved template 91, and its CRC A13A.
EMVCO_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT"
    "6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016"
    "A0112233449988770708123456786304A13A"
)
# A dynamic Brazilian Pix payload (BR Code, an EMV MPM profile) as published with its CRC-16 (CCITT-FALSE) EEAB.
PIX_DYNAMIC_EXAMPLE = (
    "00020101021226770014BR.GOV.BCB.PIX2555pix.example.com/qr/93598be0-1bd0-4997-8318-81776a1d8a99520400005303986"
    "5802BR5907EMPRESA6009SAO PAULO62070503***6304EEAB"
)


def _code(**overrides: object) -> PaymentRequestCode:
    fields: dict[str, object] = {
        "request_id": "qr_01TESTREQUEST",
        "amount_minor": 1_234,
        "currency": "EUR",
        "merchant_name": "Cafe de Flore",
        "merchant_city": "Paris",
        "merchant_category_code": "5812",
        "country": "FR",
        "reference": "INV-42",
    }
    fields.update(overrides)
    return PaymentRequestCode(**fields)  # type: ignore[arg-type]


def _signed(body: str) -> str:
    """`body` (ending with "6304") with its CRC: what someone editing a payload on purpose would produce."""
    if not body.endswith("6304"):
        raise ValueError("the body ends with the CRC's id and length")
    return body + payload_crc(body)


EXAMPLE_BODY = EMVCO_EXAMPLE[:-4]


# ------------------------------------------------------------------------------------------------------- CRC
def test_crc_is_ccitt_false_with_the_catalogue_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740) check value
    assert crc16_ccitt_false(b"") == 0xFFFF  # the initial value, no final XOR
    assert payload_crc(EMVCO_EXAMPLE[:-4]) == "A13A"  # over the UTF-8 bytes, up to and including "6304"
    assert payload_crc(PIX_DYNAMIC_EXAMPLE[:-4]) == "EEAB"


# ------------------------------------------------------------------------------------------------------- parse
def test_the_emvco_specification_example_parses() -> None:
    parsed = parse_payload(EMVCO_EXAMPLE)
    assert parsed.dynamic and parsed.crc == "A13A"
    assert (parsed.merchant_name, parsed.merchant_city, parsed.country) == ("BEST TRANSPORT", "BEIJING", "CN")
    assert (parsed.merchant_category_code, parsed.currency_numeric, parsed.currency()) == ("4111", "156", "CNY")
    assert (parsed.amount, parsed.amount_minor()) == ("23.72", 2_372)
    assert parsed.templates == {
        "29": {"00": "D15600000000", "05": "A93FO3230Q"},
        "31": {"00": "D15600000001", "03": "12345678"},
    }
    assert parsed.additional == {"03": "1234", "06": "***", "07": "A6008667", "09": "ME"}
    assert dict(parsed.objects)["64"] == "0002ZH0104最佳运输0202北京"  # lengths in characters, not bytes
    assert parsed.request_id() is None  # not a MonCore payload


def test_a_pix_payload_parses_as_another_scheme() -> None:
    parsed = parse_payload(PIX_DYNAMIC_EXAMPLE)
    assert parsed.templates["26"]["00"] == "BR.GOV.BCB.PIX" and parsed.currency() == "BRL"
    assert parsed.amount is None and parsed.amount_minor() is None  # the amount is fetched from the URL
    assert parsed.reference == "***" and parsed.request_id() is None


@pytest.mark.parametrize("position", [10, 60, 120, len(EMVCO_EXAMPLE) - 10])
def test_any_altered_character_fails_the_crc(position: int) -> None:
    original = EMVCO_EXAMPLE[position]
    altered = EMVCO_EXAMPLE[:position] + ("7" if original != "7" else "8") + EMVCO_EXAMPLE[position + 1 :]
    with pytest.raises(QrPayloadInvalid) as refused:
        parse_payload(altered)
    assert refused.value.code == "qr_payload_invalid" and refused.value.status == 422


def test_the_crc_itself_altered_fails() -> None:
    with pytest.raises(QrPayloadInvalid, match="CRC mismatch"):
        parse_payload(EMVCO_EXAMPLE[:-4] + "A13B")


@pytest.mark.parametrize(
    ("payload", "object_id"),
    [
        ("", "payload"),
        ("x" * 513, "payload"),
        ("00020163", "payload"),  # truncated object header
        ("0002016304A1", "payload"),  # the CRC object announces 4 characters, holds 2
        (_signed("000202" + EXAMPLE_BODY[6:]), "00"),  # payload format indicator must be 01 ...
        (_signed("010212000201" + EXAMPLE_BODY[12:]), "00"),  # ... and first
        (_signed(EXAMPLE_BODY + "5802FR6304"), "payload"),  # an object repeated (58, and the CRC not last)
        (_signed("000201" + "010213" + EXAMPLE_BODY[12:]), "01"),  # point of initiation 11 or 12 only
        (_signed("0002010102125204411153031565802CN5914BEST TRANSPORT6007BEIJING6304"), "26"),  # no account
        (_signed(EXAMPLE_BODY.replace("0012D156000000000510", "0012D156000000000599")), "29"),  # truncated inside
        (_signed(EXAMPLE_BODY.replace("29300012D15600000000", "29300112D15600000000")), "29"),  # no GUI 00
        (_signed(EXAMPLE_BODY.replace("52044111", "5204411A")), "52"),
        (_signed(EXAMPLE_BODY.replace("5303156", "5303EUR")), "53"),
        (_signed(EXAMPLE_BODY.replace("540523.72", "540523,72")), "54"),
        (_signed(EXAMPLE_BODY.replace("540523.72", "54050.000")), "54"),  # not positive
        (_signed(EXAMPLE_BODY.replace("5802CN", "5802cn")), "58"),
        (_signed(EXAMPLE_BODY.replace("5914BEST TRANSPORT", "5926BEST TRANSPORT COMPANY LTD")), "59"),
        (_signed(EXAMPLE_BODY.replace("6007BEIJING", "")), "60"),
        (_signed(EXAMPLE_BODY[:-4] + "620801041234" + "6304"), "payload"),  # a second 62
    ],
)
def test_malformed_payloads_are_refused_naming_the_object(payload: str, object_id: str) -> None:
    with pytest.raises(QrPayloadInvalid) as refused:
        parse_payload(payload)
    assert refused.value.errors and refused.value.errors[0]["loc"] == ["body", "payload"]
    assert refused.value.errors[0]["object"] == object_id, refused.value.detail


def test_a_repeated_object_is_refused() -> None:
    with pytest.raises(QrPayloadInvalid, match="appears twice"):
        parse_objects("0002010002016304")


def test_an_amount_with_more_decimals_than_the_currency_is_refused() -> None:
    jpy = _signed(EXAMPLE_BODY.replace("5303156", "5303392"))  # 23.72 JPY: JPY has no minor unit
    with pytest.raises(QrPayloadInvalid, match="more decimals"):
        parse_payload(jpy).amount_minor()
    assert parse_payload(_signed(EXAMPLE_BODY.replace("540523.72", "540523.70"))).amount_minor() == 2_370


# ------------------------------------------------------------------------------------------------------- encode
def test_moncore_payload_object_by_object() -> None:
    payload = encode_payment_request(_code())
    assert (
        payload
        == (
            "000201"  # payload format indicator 01
            "010212"  # dynamic
            "2635" + "0011" + MONCORE_GUI + "0116qr_01TESTREQUEST"  # merchant account template: GUI + request id
            "52045812"  # merchant category code
            "5303978"  # EUR, ISO 4217 numeric
            "540512.34"  # amount
            "5802FR"
            "5913Cafe de Flore"
            "6005Paris"
            "62100506INV-42"  # additional data: reference label
            "6304" + payload_crc(payload[:-4])
        )
    )
    parsed = parse_payload(payload)
    assert parsed.request_id() == "qr_01TESTREQUEST" and parsed.reference == "INV-42"
    assert (parsed.currency(), parsed.amount_minor(), parsed.country) == ("EUR", 1_234, "FR")


@pytest.mark.parametrize(
    ("currency", "amount_minor", "written"),
    [("EUR", 1, "0.01"), ("JPY", 1_234, "1234"), ("BHD", 10_237, "10.237"), ("EUR", 99_999_999_999, "999999999.99")],
)
def test_amounts_round_trip_in_minor_units(currency: str, amount_minor: int, written: str) -> None:
    parsed = parse_payload(encode_payment_request(_code(currency=currency, amount_minor=amount_minor, reference=None)))
    assert (parsed.amount, parsed.amount_minor(), parsed.currency()) == (written, amount_minor, currency)
    assert "62" not in dict(parsed.objects)  # no reference, no additional data template


def test_values_the_encoder_cannot_write_are_refused() -> None:
    for overrides in (
        {"amount_minor": 10**13},  # "100000000000.00" is 15 characters: object 54 holds 13
        {"merchant_name": "x" * 26},
        {"merchant_city": "Saint-Remy-de-Provence"},
        {"merchant_name": "Café"},  # printable ASCII only
        {"reference": "r" * 26},
        {"merchant_category_code": "581"},
        {"country": "fr"},
    ):
        with pytest.raises(ValidationFailed):
            encode_payment_request(_code(**overrides))
    with pytest.raises(ValidationFailed):
        tlv("26", "x" * 100)


def test_currency_numeric_codes() -> None:
    assert [currency_numeric(c) for c in ("EUR", "JPY", "BHD", "USD")] == ["978", "392", "048", "840"]
    assert currency_from_numeric("978") == "EUR" and currency_from_numeric("048") == "BHD"
    assert currency_from_numeric("959") is None  # XAU: gold has no minor unit, not money a wallet holds
    assert currency_from_numeric("000") is None
