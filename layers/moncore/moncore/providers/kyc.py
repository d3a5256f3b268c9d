"""KYC and KYB/UBO provider ports (advisory) and the sandbox adapter that implements both.

A KYC provider verifies an applicant and reports what it found, later, by a signed webhook. It advises; the kernel
adjudicates (moncore.domain.kyc). The KYC port has two halves:
- `start_verification(request)`: ask for a verification; answers at once with the provider's reference, pending;
- `parse_event(payload)`: read one of the provider's own webhook payloads (after the inbox verified its signature)
  into a `KycEvent` the kernel understands. Each adapter owns its provider's wire format, so swapping providers
  changes no kernel code.
Which adapter a tenant uses is tenant configuration (`kyc_provider`), never the environment's name.

The KYB/UBO port (`KybProvider`) is the same shape for a business: `start_business_verification(request)` asks the
provider to look the business up in its company registry (with the beneficial owners the partner declared), and
`parse_business_event(payload)` reads its later webhook into a `KybEvent` whose `BusinessAdvisory` (registry found,
registry status, the owners the registry names with integer basis points, risk flags) the kernel adjudicates itself
(moncore.domain.kyb: UBOs at 25 %, undeclared owners referred, every UBO to be screened as a person). The tenant's
`kyc_provider` answers both when its adapter implements both (as the sandbox does); an adapter registered only for
KYC is not a KYB provider (`kyb_provider` refuses it).

The sandbox adapter behaves like a real provider's test mode: the outcome is chosen by the applicant's data, here a
marker `kyc_<scenario>` inside the user's external_ref (e.g. "alice+kyc_pep"), and the result is delivered later as
a signed webhook. `SandboxKyc.completion_event` builds that webhook body (tests and demos sign it with
`domain.webhooks.signature_header` and POST it to /webhooks/sandbox_kyc).

Errors (both ports): ProviderUnavailable (retryable: nothing was started that the retry would not find again, since
the provider's reference derives from our check id), ValidationFailed (unknown provider, malformed event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from moncore.domain.errors import ProviderUnavailable, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.kyb import BusinessAdvisory, Owner
from moncore.domain.kyc import Advisory
from moncore.providers import registry
from moncore.providers.plugins import Adapters

COMPLETED = "verification.completed"
BUSINESS_COMPLETED = "business_verification.completed"


@dataclass(frozen=True, slots=True)
class Applicant:
    external_ref: str
    full_name: str
    country: str
    date_of_birth: str | None


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    tenant_id: str
    user_id: str
    check_id: str
    level: str  # tier_1 | tier_2
    applicant: Applicant

    @property
    def reference(self) -> str:
        """What the provider stores with the verification and echoes in every webhook about it: how an event finds
        its check (the match is then confirmed against the provider reference we stored, docs/kyc.md)."""
        return f"{self.tenant_id}:{self.check_id}"


@dataclass(frozen=True, slots=True)
class VerificationStarted:
    provider: str
    provider_ref: str
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class KycEvent:
    """A provider webhook, normalised: which verification it is about and, for a completion, the advisory result."""

    event_id: str
    kind: str  # verification.completed acts; anything else is stored and ignored
    provider_ref: str
    reference: str
    advisory: Advisory | None


class KycProvider(Protocol):
    name: str

    def start_verification(self, request: VerificationRequest) -> VerificationStarted: ...

    def parse_event(self, payload: Mapping[str, Any]) -> KycEvent: ...


# ------------------------------------------------------------------------------------------------ KYB / UBO port
@dataclass(frozen=True, slots=True)
class BusinessVerificationRequest:
    tenant_id: str
    check_id: str  # ours: the provider dedupes on it
    external_ref: str  # the partner's reference of the business (the sandbox reads its scenario from it)
    legal_name: str
    registration_number: str
    country: str  # ISO 3166 alpha-2 of the registry
    declared_owners: tuple[Owner, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.tenant_id}:{self.check_id}"


@dataclass(frozen=True, slots=True)
class KybEvent:
    """A KYB provider webhook, normalised; `advisory` only on a completion."""

    event_id: str
    kind: str  # business_verification.completed acts; anything else is stored and ignored
    provider_ref: str
    reference: str
    advisory: BusinessAdvisory | None


class KybProvider(Protocol):
    name: str

    def start_business_verification(self, request: BusinessVerificationRequest) -> VerificationStarted: ...

    def parse_business_event(self, payload: Mapping[str, Any]) -> KybEvent: ...


def parse_reference(reference: str) -> tuple[str, str] | None:
    """(tenant id, check id) of a reference built by VerificationRequest.reference; None when it is not one."""
    tenant_id, separator, check_id = reference.partition(":")
    if not separator or not tenant_id or not check_id or "#" in reference or len(reference) > 200:
        return None
    return tenant_id, check_id


# ------------------------------------------------------------------------------------------------ sandbox
# Scenario -> the sandbox provider's result. Chosen by `kyc_<scenario>` in the applicant's external_ref; "clear"
# otherwise. The provider's recommended tier is deliberately naive (it always recommends the requested level unless
# the document failed), so tests show the kernel deciding against it.
SANDBOX_SCENARIOS: dict[str, dict[str, Any]] = {
    "clear": {},
    "no_address": {"address": {"verified": False}},
    "no_liveness": {"liveness": {"passed": False}},
    "document_unverified": {"document": {"verified": False}},
    "pep": {"risk_flags": ["pep"]},
    "adverse_media": {"risk_flags": ["adverse_media"]},
    "document_expired": {"risk_flags": ["document_expired"], "document": {"expires_on": "2020-01-31"}},
    "new_flag": {"risk_flags": ["crypto_exposure"]},
}
SANDBOX_UNAVAILABLE = "unavailable"  # `kyc_unavailable`: start_verification fails (retryable), like a provider outage
SANDBOX_DOCUMENT_EXPIRES_ON = "2031-12-31"


def sandbox_scenario(applicant: Applicant) -> str:
    ref = applicant.external_ref
    for name in (*SANDBOX_SCENARIOS, SANDBOX_UNAVAILABLE):
        if f"kyc_{name}" in ref:
            return name
    return "clear"


class SandboxKyc:
    """Simulated KYC provider. Its references derive from our check id (a retried start finds the same
    verification, like a real provider's idempotent API); its webhooks use its own wire format, read by
    parse_event."""

    name = "sandbox_kyc"

    def start_verification(self, request: VerificationRequest) -> VerificationStarted:
        if sandbox_scenario(request.applicant) == SANDBOX_UNAVAILABLE:
            raise ProviderUnavailable("the KYC provider is unavailable; retry with the same Idempotency-Key")
        return VerificationStarted(self.name, self.provider_ref(request))

    @staticmethod
    def provider_ref(request: VerificationRequest) -> str:
        return derived_id("sbxkyc", request.tenant_id, request.check_id)

    def completion_event(self, request: VerificationRequest, *, event_id: str, created_at: str) -> dict[str, Any]:
        """The webhook body the sandbox provider sends when it has finished `request` (its own wire format)."""
        scenario = SANDBOX_SCENARIOS.get(sandbox_scenario(request.applicant), {})
        document = {"verified": True, "expires_on": SANDBOX_DOCUMENT_EXPIRES_ON} | scenario.get("document", {})
        liveness = {"passed": True} | scenario.get("liveness", {})
        address = {"verified": True} | scenario.get("address", {})
        recommended = request.level if document["verified"] else "tier_0"
        return {
            "id": event_id,
            "type": COMPLETED,
            "created_at": created_at,
            "verification": {
                "id": self.provider_ref(request),
                "reference": request.reference,
                "level": request.level,
                "result": {
                    "document": document,
                    "liveness": liveness,
                    "address": address,
                    "risk_flags": list(scenario.get("risk_flags", [])),
                    "recommended_tier": recommended,
                },
            },
        }

    def parse_event(self, payload: Mapping[str, Any]) -> KycEvent:
        event_id, kind = payload.get("id"), payload.get("type")
        verification = payload.get("verification")
        if not _text(event_id) or not _text(kind) or not isinstance(verification, Mapping):
            raise _malformed("id, type and verification are required")
        provider_ref, reference = verification.get("id"), verification.get("reference")
        if not _text(provider_ref) or not _text(reference):
            raise _malformed("verification.id and verification.reference are required")
        advisory = None
        if kind == COMPLETED:
            result = verification.get("result")
            if not isinstance(result, Mapping):
                raise _malformed("verification.result is required on verification.completed")
            document, liveness, address = (_section(result, name) for name in ("document", "liveness", "address"))
            advisory = Advisory.from_mapping(
                {
                    "document_verified": document.get("verified", False),
                    "liveness_passed": liveness.get("passed", False),
                    "address_verified": address.get("verified", False),
                    "risk_flags": result.get("risk_flags", []),
                    "recommended_tier": result.get("recommended_tier"),
                    "document_expires_on": document.get("expires_on"),
                }
            )
        return KycEvent(str(event_id), str(kind), str(provider_ref), str(reference), advisory)

    # ---- KYB / UBO
    def start_business_verification(self, request: BusinessVerificationRequest) -> VerificationStarted:
        if business_scenario(request.external_ref) == "unavailable":
            raise ProviderUnavailable("the KYB provider is unavailable; retry with the same Idempotency-Key")
        return VerificationStarted(self.name, self.business_ref(request))

    @staticmethod
    def business_ref(request: BusinessVerificationRequest) -> str:
        return derived_id("sbxkyb", request.tenant_id, request.check_id)

    def business_completion_event(
        self, request: BusinessVerificationRequest, *, event_id: str, created_at: str
    ) -> dict[str, Any]:
        """The webhook the sandbox sends when its registry lookup of `request` is done (its own wire format): the
        registry names the declared owners; in the `undeclared_owner` scenario it also names a 40 % owner the
        partner did not declare (and the declared ones hold 60 % of what they said)."""
        scenario = business_scenario(request.external_ref)
        hidden = scenario == "undeclared_owner"
        owners = [
            {
                "name": o.full_name,
                "nationality": o.country,
                "share_bp": o.ownership_bp * 6 // 10 if hidden else o.ownership_bp,
                "born": o.date_of_birth,
            }
            for o in request.declared_owners
        ]
        if hidden:
            owners.append({"name": "Hidden Owner", "nationality": "FR", "share_bp": 4_000, "born": None})
        company = {
            "found": scenario != "not_found",
            "status": "dissolved" if scenario == "dissolved" else "active",
            "owners": owners if scenario != "not_found" else [],
        }
        return {
            "id": event_id,
            "type": BUSINESS_COMPLETED,
            "created_at": created_at,
            "business_verification": {
                "id": self.business_ref(request),
                "reference": request.reference,
                "company": company,
                "risk_flags": ["sanctions"] if scenario == "sanctions" else [],
                "recommendation": "approve",
            },
        }

    def parse_business_event(self, payload: Mapping[str, Any]) -> KybEvent:
        event_id, kind = payload.get("id"), payload.get("type")
        verification = payload.get("business_verification")
        if not _text(event_id) or not _text(kind) or not isinstance(verification, Mapping):
            raise _malformed("id, type and business_verification are required")
        provider_ref, reference = verification.get("id"), verification.get("reference")
        if not _text(provider_ref) or not _text(reference):
            raise _malformed("business_verification.id and .reference are required")
        advisory = None
        if kind == BUSINESS_COMPLETED:
            company = verification.get("company")
            if not isinstance(company, Mapping) or not isinstance(company.get("owners", []), list):
                raise _malformed("business_verification.company with a list of owners is required")
            advisory = BusinessAdvisory.from_mapping(
                {
                    "registry_found": company.get("found"),
                    "registry_status": company.get("status"),
                    "owners": [
                        {
                            "full_name": o.get("name"),
                            "country": o.get("nationality"),
                            "ownership_bp": o.get("share_bp"),
                            "date_of_birth": o.get("born"),
                        }
                        if isinstance(o, Mapping)
                        else o
                        for o in company.get("owners", [])
                    ],
                    "risk_flags": verification.get("risk_flags", []),
                    "recommended": verification.get("recommendation"),
                }
            )
        return KybEvent(str(event_id), str(kind), str(provider_ref), str(reference), advisory)


def business_scenario(external_ref: str) -> str:
    """The sandbox KYB behaviour: `kyb_<scenario>` in the business's external reference, else "clear"."""
    for name in SANDBOX_BUSINESS_SCENARIOS:
        if f"kyb_{name}" in external_ref:
            return name
    return "clear"


SANDBOX_BUSINESS_SCENARIOS = ("not_found", "dissolved", "undeclared_owner", "sanctions", "unavailable")


def _section(result: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = result.get(name, {})
    if not isinstance(section, Mapping):
        raise _malformed(f"verification.result.{name} must be an object")
    return section


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


def _malformed(detail: str) -> ValidationFailed:
    return ValidationFailed(f"malformed KYC event: {detail}", errors=[{"loc": ["body"], "msg": detail}])


DEFAULT_KYC_PROVIDER = SandboxKyc.name
_SANDBOX = SandboxKyc()
ADAPTERS: Adapters[KycProvider] = Adapters("KYC provider", "kyc_provider", [(SandboxKyc.name, _SANDBOX)])
KYB_ADAPTERS: Adapters[KybProvider] = Adapters("KYB provider", "kyc_provider", [(SandboxKyc.name, _SANDBOX)])


def register(adapter: KycProvider) -> None:
    """Make a KYC adapter selectable as a tenant's `kyc_provider` and route /webhooks/<its name> to the KYC
    receiver (providers/plugins.py loads the modules that call this)."""
    registry.register(adapter.name, registry.KYC)
    ADAPTERS.register(adapter.name, adapter)


def register_kyb(adapter: KybProvider) -> None:
    """Make an adapter answer KYB/UBO checks for tenants whose `kyc_provider` it is."""
    KYB_ADAPTERS.register(adapter.name, adapter)


def kyc_provider(name: str) -> KycProvider:
    """The adapter configured for a tenant (or named in a webhook path)."""
    return ADAPTERS.get(name)


def kyb_provider(name: str) -> KybProvider:
    """The KYB/UBO adapter of a tenant's `kyc_provider` (ValidationFailed when that adapter does no KYB)."""
    return KYB_ADAPTERS.get(name)


def known_provider(name: str) -> bool:
    return ADAPTERS.known(name)
