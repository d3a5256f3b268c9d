"""Pure geo rules (moncore.domain.geo): tenant jurisdictions and the dated FATF call-for-action list."""

from __future__ import annotations

import datetime as dt

import pycountry
import pytest

from moncore.domain.errors import ComplianceBlocked, GeoBlocked
from moncore.domain.geo import (
    FATF_CALL_FOR_ACTION,
    FATF_LIST_AS_OF,
    blocked_reason,
    check_counterparty_country,
    check_tenant_jurisdictions,
    check_user_country,
    iban_country,
)


def test_the_fatf_list_is_dated_and_made_of_real_countries() -> None:
    assert dt.date.fromisoformat(FATF_LIST_AS_OF) == dt.date(2025, 10, 24)
    assert set(FATF_CALL_FOR_ACTION) == {"KP", "IR", "MM"}
    for code, listing in FATF_CALL_FOR_ACTION.items():
        assert pycountry.countries.get(alpha_2=code) is not None and listing.country == code
        assert listing.measure in {"countermeasures", "enhanced due diligence"}


def test_reasons() -> None:
    assert blocked_reason("FR", ["FR", "GB"]) is None
    assert blocked_reason("DE", ["FR", "GB"]) == "outside_jurisdictions"
    assert blocked_reason("IR", ["FR"]) == "fatf_call_for_action"
    assert blocked_reason("MM", ["MM"]) == "fatf_call_for_action"  # the FATF rule wins over any configuration


def test_user_check_records_or_refuses() -> None:
    assert check_user_country("GB", ("FR", "GB")) == {
        "check": "geo",
        "subject": "user",
        "country": "GB",
        "result": "pass",
        "fatf_list_as_of": FATF_LIST_AS_OF,
    }
    with pytest.raises(GeoBlocked) as raised:
        check_user_country("KP", ("FR",))
    error = raised.value
    assert isinstance(error, ComplianceBlocked) and (error.status, error.code) == (422, "geo_blocked")
    assert error.errors == [
        {
            "loc": ["body", "country"],
            "msg": "FATF call-for-action jurisdiction",
            "reason": "fatf_call_for_action",
            "country": "KP",
        }
    ]
    with pytest.raises(GeoBlocked, match="outside the tenant's jurisdictions"):
        check_user_country("DE", ("FR",))


def test_counterparty_check_and_iban_country() -> None:
    assert iban_country("fr76 3000 6000 0112 3456 7890 189") == "FR"
    assert check_counterparty_country(iban_country("FR7630006000011234567890189"), ["FR"])["subject"] == "counterparty"
    with pytest.raises(GeoBlocked) as raised:
        check_counterparty_country("IR", ["FR"])
    assert raised.value.errors and raised.value.errors[0]["loc"] == ["body", "beneficiary", "country"]


def test_a_tenant_may_not_serve_a_listed_country() -> None:
    check_tenant_jurisdictions(["FR", "GB"])
    with pytest.raises(GeoBlocked, match="KP"):
        check_tenant_jurisdictions(["FR", "KP"])
