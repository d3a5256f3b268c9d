"""Pure KYC rules: the kernel's adjudication of advisory results (moncore.domain.kyc), webhook signatures
(moncore.domain.webhooks) and the sandbox adapter's wire format (moncore.providers.kyc)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from moncore.domain.errors import InvalidSignature, ValidationFailed
from moncore.domain.kyc import EVIDENCE_VALIDITY, Advisory, Decision, KycStatus, adjudicate
from moncore.domain.webhooks import TOLERANCE_S, signature_header, verify_signature
from moncore.providers.kyc import Applicant, SandboxKyc, VerificationRequest, parse_reference

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CLEAR = Advisory(document_verified=True, liveness_passed=True, address_verified=True, recommended_tier="tier_2")


def decide(advisory: Advisory, level: str = "tier_2", tier: str = "tier_0", status: str | None = None) -> Any:
    return adjudicate(level=level, current_tier=tier, current_status=status, advisory=advisory, now=NOW)


def with_(**changes: Any) -> Advisory:
    return Advisory(**{**CLEAR.record(), "risk_flags": (), **changes})


# ------------------------------------------------------------------------------------------------ adjudication
def test_tier_1_needs_document_and_liveness_tier_2_also_address() -> None:
    assert decide(CLEAR, "tier_1").tier_after == "tier_1"  # never more than asked
    assert decide(CLEAR, "tier_2").tier_after == "tier_2"
    no_address = decide(with_(address_verified=False), "tier_2")
    assert (no_address.decision, no_address.granted_tier, no_address.tier_after) == (
        Decision.APPROVED,
        "tier_1",
        "tier_1",
    )
    assert "address_not_verified" in no_address.reasons
    for missing in ({"document_verified": False}, {"liveness_passed": False}):
        refused = decide(with_(**missing), "tier_1")
        assert (refused.decision, refused.tier_after, refused.kyc_status) == (
            Decision.REJECTED,
            "tier_0",
            KycStatus.REJECTED,
        )


def test_the_providers_recommendation_is_recorded_never_trusted() -> None:
    naive = with_(liveness_passed=False, recommended_tier="tier_2")
    decided = decide(naive, "tier_2")
    assert decided.tier_after == "tier_0" and decided.decision is Decision.REJECTED
    assert "provider_recommended:tier_2 (advisory, not used)" in decided.reasons


@pytest.mark.parametrize("flag", ["pep", "adverse_media", "sanctions", "some_new_flag"])
def test_risk_flags_refer_to_an_officer_without_any_upgrade(flag: str) -> None:
    decided = decide(with_(risk_flags=(flag,)), "tier_1")
    assert decided.decision is Decision.REFERRED and decided.opens_case
    assert (decided.tier_after, decided.granted_tier, decided.kyc_status) == ("tier_0", None, KycStatus.REVIEW)
    assert any(flag in reason for reason in decided.reasons)


def test_an_expired_document_is_rejected_by_flag_or_by_date() -> None:
    by_flag = decide(with_(risk_flags=("document_expired",)), "tier_1")
    by_date = decide(with_(document_expires_on="2026-03-09"), "tier_1")
    for decided in (by_flag, by_date):
        assert (decided.decision, decided.tier_after, decided.reasons[0]) == (
            Decision.REJECTED,
            "tier_0",
            "document_expired",
        )
    assert decide(with_(document_expires_on="2026-03-10"), "tier_1").decision is Decision.APPROVED  # valid today


def test_a_check_never_lowers_the_tier_and_a_failed_one_keeps_a_verified_status() -> None:
    lower = decide(CLEAR, "tier_1", tier="tier_2", status="verified")
    assert (lower.decision, lower.tier_after, lower.expires_at) == (Decision.APPROVED, "tier_2", None)  # no renewal
    failed = decide(with_(liveness_passed=False), "tier_2", tier="tier_1", status="verified")
    assert (failed.decision, failed.tier_after, failed.kyc_status) == (Decision.REJECTED, "tier_1", KycStatus.VERIFIED)
    referred = decide(with_(risk_flags=("pep",)), "tier_2", tier="tier_1", status="verified")
    assert (referred.tier_after, referred.kyc_status) == ("tier_1", KycStatus.REVIEW)


def test_evidence_expires_after_a_year_or_with_the_document() -> None:
    assert decide(CLEAR, "tier_1").expires_at == (NOW + EVIDENCE_VALIDITY).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert decide(with_(document_expires_on="2026-06-30"), "tier_1").expires_at == "2026-07-01T00:00:00.000000Z"


def test_advisory_results_are_read_strictly() -> None:
    base = {"document_verified": True, "liveness_passed": True, "address_verified": True}
    assert Advisory.from_mapping(base | {"risk_flags": ["pep", "pep"]}).risk_flags == ("pep",)
    for bad in (
        {"document_verified": "true"},
        {"liveness_passed": 1},
        {"risk_flags": "pep"},
        {"risk_flags": [1]},
        {"document_expires_on": "31/12/2030"},
        {"recommended_tier": 2},
    ):
        with pytest.raises(ValidationFailed):
            Advisory.from_mapping(base | bad)
    assert Advisory.from_mapping(base).sha256 == Advisory.from_mapping(dict(reversed(base.items()))).sha256


# ------------------------------------------------------------------------------------------------ signatures
BODY = b'{"id": "evt_1"}'


def test_a_signature_verifies_with_either_active_secret_within_the_tolerance() -> None:
    header = signature_header("new", 1_000_000, BODY)
    assert verify_signature(header, BODY, ["new", "old"], now_s=1_000_000).secret_index == 0
    old = signature_header("old", 1_000_000, BODY)
    assert verify_signature(old, BODY, ["new", "old"], now_s=1_000_000 + TOLERANCE_S).secret_index == 1
    both = f"{old},v1={signature_header('new', 1_000_000, BODY).split('v1=')[1]}"  # a provider signing twice
    assert verify_signature(both, BODY, ["new"], now_s=1_000_000).secret_index == 0


@pytest.mark.parametrize(
    ("header", "body", "now_s", "reason"),
    [
        (None, BODY, 1_000_000, "missing_signature"),
        ("v1=abc", BODY, 1_000_000, "malformed_signature"),
        ("t=1000000,v1=" + "0" * 64, BODY, 1_000_000, "signature_mismatch"),
        (signature_header("retired", 1_000_000, BODY), BODY, 1_000_000, "signature_mismatch"),
        (signature_header("new", 1_000_000, BODY), BODY + b" ", 1_000_000, "signature_mismatch"),
        (signature_header("new", 1_000_000, BODY), BODY, 1_000_000 + TOLERANCE_S + 1, "timestamp_outside_tolerance"),
        (signature_header("new", 1_000_000, BODY), BODY, 1_000_000 - TOLERANCE_S - 1, "timestamp_outside_tolerance"),
    ],
)
def test_invalid_signatures_name_their_reason(header: str | None, body: bytes, now_s: int, reason: str) -> None:
    with pytest.raises(InvalidSignature) as refused:
        verify_signature(header, body, ["new", "old"], now_s=now_s)
    assert (refused.value.status, refused.value.code, refused.value.reason) == (401, "invalid_signature", reason)


def test_more_than_two_active_secrets_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="1 to 2"):
        verify_signature(signature_header("a", 1, BODY), BODY, ["a", "b", "c"], now_s=1)


# ------------------------------------------------------------------------------------------------ sandbox adapter
def request(external_ref: str, level: str = "tier_2") -> VerificationRequest:
    return VerificationRequest("ten_1", "usr_1", "kyc_1", level, Applicant(external_ref, "Ada", "FR", None))


def test_the_sandbox_round_trips_its_own_wire_format() -> None:
    sandbox = SandboxKyc()
    created = (NOW - timedelta(seconds=1)).isoformat()
    event = sandbox.parse_event(
        sandbox.completion_event(request("a+kyc_no_address"), event_id="e1", created_at=created)
    )
    assert (event.event_id, event.provider_ref, parse_reference(event.reference)) == (
        "e1",
        sandbox.start_verification(request("a+kyc_no_address")).provider_ref,
        ("ten_1", "kyc_1"),
    )
    assert event.advisory is not None and not event.advisory.address_verified
    assert event.advisory.recommended_tier == "tier_2"  # the naive recommendation the kernel overrules
    pep = sandbox.parse_event(sandbox.completion_event(request("b+kyc_pep"), event_id="e2", created_at=created))
    assert pep.advisory is not None and pep.advisory.risk_flags == ("pep",)
    with pytest.raises(ValidationFailed):
        sandbox.parse_event({"id": "e3", "type": "verification.completed", "verification": {"id": "x"}})
    assert parse_reference("no-separator") is None and parse_reference("a#b:c") is None
