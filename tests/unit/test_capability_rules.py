"""Capability rules (pure) and the admin body schema kept equal to the domain's capability list."""

from typing import get_args

import pytest
from pydantic import ValidationError

from moncore.domain.capabilities import (
    ISSUER_GATED,
    Capability,
    Mode,
    RequestStatus,
    allows,
    default_capabilities,
    needs_four_eyes,
    shown_status,
)
from moncore.http.schemas import CapabilityName, ChangeCapability


def test_schema_lists_exactly_the_domain_capabilities() -> None:
    assert set(get_args(CapabilityName)) == {cap.value for cap in Capability}


def test_only_live_needs_four_eyes_and_only_live_allows() -> None:
    assert [mode for mode in Mode if needs_four_eyes(mode)] == [Mode.LIVE]
    assert [mode for mode in Mode if allows(mode.value)] == [Mode.LIVE]
    assert not allows("LIVE") and not allows("")


def test_issuer_gated_capabilities_start_disabled() -> None:
    defaults = default_capabilities()
    assert {cap for cap in Capability if defaults[cap.value] == "disabled"} == set(ISSUER_GATED)


def test_a_pending_request_past_its_expiry_shows_expired() -> None:
    expires = "2026-01-08T00:00:00.000000Z"
    assert shown_status("PENDING", expires, "2026-01-07T23:59:59.999999Z") is RequestStatus.PENDING
    assert shown_status("PENDING", expires, expires) is RequestStatus.EXPIRED
    assert shown_status("APPROVED", expires, "2027-01-01T00:00:00.000000Z") is RequestStatus.APPROVED


@pytest.mark.parametrize(
    "body",
    [
        {"capability": "fx", "mode": "LIVE", "contract_ref": "C"},
        {"capability": "FX", "mode": "live", "contract_ref": "C"},
        {"capability": "fx", "mode": "live", "contract_ref": " C"},
        {"capability": "fx", "mode": "live", "contract_ref": "C\n1"},
        {"capability": "fx", "mode": "live", "contract_ref": "C" * 129},
        {"capability": "fx", "mode": "live", "contract_ref": 7},
    ],
)
def test_bad_capability_bodies_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChangeCapability.model_validate(body)


def test_contract_refs_may_hold_inner_spaces() -> None:
    parsed = ChangeCapability.model_validate({"capability": "fx", "mode": "live", "contract_ref": "MSA 2026/07 #3"})
    assert parsed.contract_ref == "MSA 2026/07 #3"
