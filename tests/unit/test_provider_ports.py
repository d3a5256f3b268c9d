"""Provider ports (docs/providers.md): the kernel depends on the ports only, adapters are looked up by name (an
unknown one is refused at the tenant setting that names it), and the KYB/UBO port's advisory report is adjudicated
by the kernel's own rules (moncore.domain.kyb)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from moncore.domain.errors import ProviderUnavailable, ValidationFailed
from moncore.domain.kyb import BusinessAdvisory, Owner, adjudicate_business
from moncore.domain.kyc import Decision
from moncore.providers.kyc import BusinessVerificationRequest, SandboxKyc, kyb_provider

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "layers" / "moncore" / "moncore"
# What only the port modules (and tests) may name: the simulated adapters themselves.
ADAPTER_NAMES = ("Sandbox", "SANDBOX", "MonCoreLists")


def imported_names(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def test_the_kernel_and_the_handlers_depend_on_the_ports_never_on_an_adapter() -> None:
    sources = [p for p in KERNEL.rglob("*.py") if "providers" not in p.relative_to(KERNEL).parts]
    sources += list((ROOT / "functions").rglob("app.py"))
    offenders = [
        f"{path.relative_to(ROOT)}: {module}.{name}"
        for path in sources
        for module, name in imported_names(path)
        if module.startswith("moncore.providers") and name.startswith(ADAPTER_NAMES)
    ]
    assert offenders == []
    assert len(sources) > 50  # the scan did look at the kernel


@pytest.mark.parametrize(
    ("module", "lookup", "setting"),
    [
        ("open_banking", "open_banking_provider", "open_banking_provider"),
        ("fx", "fx_provider", "fx_provider"),
        ("kyc", "kyc_provider", "kyc_provider"),
        ("kyc", "kyb_provider", "kyc_provider"),
        ("screening", "screening_provider", "screening_provider"),
        ("cards", "card_issuer", "card_issuer"),
        ("cards", "card_processor", "card_processor"),
    ],
)
def test_an_unknown_adapter_is_refused_at_the_setting_that_names_it(module: str, lookup: str, setting: str) -> None:
    import importlib

    find = getattr(importlib.import_module(f"moncore.providers.{module}"), lookup)
    with pytest.raises(ValidationFailed) as refused:
        find("no_such_provider_anywhere")
    assert refused.value.errors[0]["loc"] == ["body", setting]


def test_the_sandbox_kyc_adapter_is_also_the_tenants_kyb_adapter() -> None:
    assert isinstance(kyb_provider("sandbox_kyc"), SandboxKyc)


# ------------------------------------------------------------------------------------------------ KYB / UBO rules
ALICE = Owner("Alice Martin", "FR", 6_000, "1980-02-01")
BOB = Owner("Bob Durand", "FR", 3_000)
CAROL = Owner("Carol Small", "BE", 1_000)


def advisory(**changes: object) -> BusinessAdvisory:
    raw: dict[str, object] = {
        "registry_found": True,
        "registry_status": "active",
        "owners": [
            {"full_name": "ALICE  martin", "country": "FR", "ownership_bp": 6_000},
            {"full_name": "Bob Durand", "country": "FR", "ownership_bp": 3_000},
        ],
        "risk_flags": [],
        "recommended": "approve",
    }
    return BusinessAdvisory.from_mapping(raw | changes)


def test_a_registered_active_business_with_its_owners_declared_is_approved_and_its_ubos_come_back_to_screen() -> None:
    outcome = adjudicate_business(declared=(ALICE, BOB, CAROL), advisory=advisory())
    assert outcome.decision is Decision.APPROVED and not outcome.opens_case
    assert [o.full_name for o in outcome.beneficial_owners] == ["Alice Martin", "Bob Durand"]  # 25 % and more
    assert "provider_recommended:approve (advisory, not used)" in outcome.reasons


@pytest.mark.parametrize(
    ("changes", "decision", "reason"),
    [
        ({"registry_found": False, "owners": []}, Decision.REJECTED, "not_in_registry"),
        ({"registry_status": "Dissolved"}, Decision.REJECTED, "registry_status:dissolved"),
        ({"risk_flags": ["sanctions"]}, Decision.REFERRED, "risk_flag:sanctions"),
        ({"risk_flags": ["crypto_mixer"]}, Decision.REFERRED, "unknown_risk_flag:crypto_mixer"),
        (
            {"owners": [{"full_name": "Hidden Owner", "country": "FR", "ownership_bp": 4_000}]},
            Decision.REFERRED,
            "undeclared_beneficial_owner:Hidden Owner",
        ),
    ],
)
def test_the_kernel_decides_against_the_providers_recommendation(
    changes: dict[str, object], decision: Decision, reason: str
) -> None:
    outcome = adjudicate_business(declared=(ALICE, BOB), advisory=advisory(**changes))
    assert (outcome.decision, outcome.reasons[0]) == (decision, reason)


def test_no_owner_at_the_threshold_is_referred_for_the_senior_managing_official() -> None:
    small = [{"full_name": f"Holder {i}", "country": "FR", "ownership_bp": 2_000} for i in range(5)]
    declared = tuple(Owner(f"Holder {i}", "FR", 2_000) for i in range(5))
    outcome = adjudicate_business(declared=declared, advisory=advisory(owners=small))
    assert outcome.decision is Decision.REFERRED and outcome.beneficial_owners == ()


@pytest.mark.parametrize(
    "owners",
    [
        [{"full_name": "A", "country": "FR", "ownership_bp": 25.0}],  # a float share
        [{"full_name": "A", "country": "FR", "ownership_bp": 0}],
        [{"full_name": "A", "country": "fr", "ownership_bp": 100}],
        [
            {"full_name": "A", "country": "FR", "ownership_bp": 6_000},
            {"full_name": "B", "country": "FR", "ownership_bp": 5_000},
        ],
        "nobody",
    ],
)
def test_malformed_ownership_is_refused(owners: object) -> None:
    with pytest.raises(ValidationFailed):
        advisory(owners=owners)


@pytest.mark.parametrize(
    ("marker", "decision"),
    [
        ("", Decision.APPROVED),
        ("kyb_not_found", Decision.REJECTED),
        ("kyb_dissolved", Decision.REJECTED),
        ("kyb_undeclared_owner", Decision.REFERRED),
        ("kyb_sanctions", Decision.REFERRED),
    ],
)
def test_the_sandbox_kyb_scenarios_through_its_own_wire_format(marker: str, decision: Decision) -> None:
    sandbox = SandboxKyc()
    request = BusinessVerificationRequest(
        "ten_1", "kyb_1", f"acme+{marker}", "Acme SAS", "RCS 123 456 789", "FR", (ALICE, BOB)
    )
    started = sandbox.start_business_verification(request)
    body = sandbox.business_completion_event(request, event_id="evt_1", created_at="2026-01-01T00:00:00Z")
    event = sandbox.parse_business_event(body)
    assert (event.provider_ref, event.reference) == (started.provider_ref, "ten_1:kyb_1")
    assert event.advisory is not None
    assert adjudicate_business(declared=request.declared_owners, advisory=event.advisory).decision is decision


def test_the_sandbox_kyb_provider_is_down_on_demand() -> None:
    request = BusinessVerificationRequest("ten_1", "kyb_2", "acme+kyb_unavailable", "Acme", "1", "FR")
    with pytest.raises(ProviderUnavailable):
        SandboxKyc().start_business_verification(request)
