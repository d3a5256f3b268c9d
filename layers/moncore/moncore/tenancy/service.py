"""Tenancy service: tenants, API keys, authentication, capability gating (changes: moncore.tenancy.capabilities).

Errors: NotFound (unknown tenant or key), Unauthorized (bad, revoked or wrong-kind key), CapabilityDisabled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from moncore.config import settings
from moncore.domain.audit import PLATFORM_TENANT, audit_event
from moncore.domain.capabilities import Capability, Mode, allows, default_capabilities
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import CapabilityDisabled, NotFound, Unauthorized, ValidationFailed
from moncore.domain.geo import check_tenant_jurisdictions
from moncore.domain.ids import new_id
from moncore.domain.limits import check_overrides
from moncore.store import audit as audit_store
from moncore.store import tenancy as store
from moncore.store.models import CredentialItem, TenantItem, plain_map
from moncore.store.secrets import secret_bytes
from moncore.tenancy import keys
from moncore.tenancy.keys import IssuedKey

ADMIN_ROLES = ("viewer", "compliance_officer", "operator", "admin")
DEFAULT_OPEN_BANKING_PROVIDER = "sandbox_open_banking"
DEFAULT_FX_PROVIDER = "sandbox_fx"
DEFAULT_KYC_PROVIDER = "sandbox_kyc"
DEFAULT_CARD_PROVIDER = "sandbox_cards"  # issuer and processor (moncore.providers.cards)
DEFAULT_SCREENING_PROVIDER = "moncore_lists"  # the kernel's own engine (moncore.providers.screening)
# Which adapter of each port the tenant uses (docs/providers.md): set at creation, all but the card adapters changed
# by PATCH /admin/v1/tenants/{id}/config (a card program moves between issuer-processors by reissuing its cards).
PROVIDER_SETTINGS = ("open_banking_provider", "fx_provider", "kyc_provider", "screening_provider")
CARD_SETTINGS = ("card_issuer", "card_processor")
# Tenant configuration changes rarely and is re-read at most every settings().tenant_cache_seconds (stack parameter
# TenantConfigCacheSeconds, 15 s by default) per container: a capability switched off takes effect within that window
# (plus the authorizer cache TTL for keys). Freezes are never cached: they are conditions of the posting itself.
SHADOW_GATE_ACTOR = "system:capability-gate"


class _Unset:
    """A field the caller did not send (PATCH): distinct from null, which means "reset"."""


UNSET = _Unset()
_KEEP = store.KEEP


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    kind: str  # tenant | admin
    tenant_id: str | None
    role: str


@dataclass(frozen=True, slots=True)
class TenantConfig:
    id: str
    name: str
    jurisdictions: tuple[str, ...]
    capabilities: dict[str, str]
    open_banking_provider: str
    status: str
    created_at: str
    fx_provider: str = DEFAULT_FX_PROVIDER
    # Overrides of the default KYC tier limits, {tier: {currency: {..._minor: int | None}}} (moncore.domain.limits).
    tier_limits: dict[str, Any] = field(default_factory=dict)
    kyc_provider: str = DEFAULT_KYC_PROVIDER
    config_version: int = 0
    card_issuer: str = DEFAULT_CARD_PROVIDER
    card_processor: str = DEFAULT_CARD_PROVIDER
    screening_provider: str = DEFAULT_SCREENING_PROVIDER

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "jurisdictions": list(self.jurisdictions),
            "capabilities": dict(self.capabilities),
            "open_banking_provider": self.open_banking_provider,
            "fx_provider": self.fx_provider,
            "kyc_provider": self.kyc_provider,
            "card_issuer": self.card_issuer,
            "card_processor": self.card_processor,
            "screening_provider": self.screening_provider,
            "tier_limits": self.tier_limits,
            "config_version": self.config_version,
            "status": self.status,
            "created_at": self.created_at,
        }


class TenancyService:
    _cache: dict[str, tuple[float, TenantConfig]] = {}
    _cache_lock = threading.Lock()

    # ---- tenants
    def create_tenant(
        self,
        caller: Caller,
        *,
        name: str,
        jurisdictions: list[str],
        tier_limits: dict[str, Any] | None = None,
        open_banking_provider: str | None = None,
        **providers: str | None,
    ) -> TenantConfig:
        """A new tenant; its open banking adapter is `open_banking_provider` or the stack's default
        (DefaultOpenBankingProvider: a counterparty, so a parameter, never the environment's name); the other
        adapters (`providers`: any of PROVIDER_SETTINGS and CARD_SETTINGS) are the sandbox ones unless named."""
        check_tenant_jurisdictions(jurisdictions)  # never a FATF call-for-action country
        overrides = check_overrides(tier_limits)
        open_banking = _open_banking_adapter(open_banking_provider or settings().default_open_banking_provider)
        chosen = {name: adapter_name(name, value) for name, value in providers.items() if value is not None}
        item = TenantItem(
            new_id("ten"),
            name=name,
            jurisdictions=sorted(set(jurisdictions)),
            capabilities=default_capabilities(),
            open_banking_provider=open_banking,
            fx_provider=chosen.get("fx_provider", DEFAULT_FX_PROVIDER),
            kyc_provider=chosen.get("kyc_provider", DEFAULT_KYC_PROVIDER),
            card_issuer=chosen.get("card_issuer", DEFAULT_CARD_PROVIDER),
            card_processor=chosen.get("card_processor", DEFAULT_CARD_PROVIDER),
            screening_provider=chosen.get("screening_provider", DEFAULT_SCREENING_PROVIDER),
            tier_limits=overrides or None,
            status="ACTIVE",
            created_at=now_rfc3339(),
            created_by=caller.actor,
        )
        config = _to_config(item)
        store.create_tenant(
            item,
            audit_event(
                tenant_id=item.pk,
                action="tenant.created",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=item.pk,
                payload=config.to_dict(),
            ),
        )
        return config

    def get_tenant(self, tenant_id: str) -> TenantConfig:
        item = store.find_tenant_item(tenant_id)
        if item is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return _to_config(item)

    def tenant_config(self, tenant_id: str) -> TenantConfig:
        """Cached read for the hot path (see settings().tenant_cache_seconds)."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(tenant_id)
        if hit and now - hit[0] < settings().tenant_cache_seconds:
            return hit[1]
        config = self.get_tenant(tenant_id)
        with self._cache_lock:
            self._cache[tenant_id] = (now, config)
        return config

    def change_config(
        self,
        caller: Caller,
        tenant_id: str,
        *,
        tier_limits: dict[str, Any] | _Unset | None = UNSET,
        jurisdictions: list[str] | _Unset | None = UNSET,
        **providers: str | _Unset | None,
    ) -> dict[str, Any]:
        """Replace the tenant's tier limit overrides (None or {}: back to the defaults) and/or its jurisdictions,
        validated like at creation, audited (`tenant.config_changed` with before and after), conditional on the
        configuration version read so two admins' changes never overwrite each other (409, retry). Containers pick
        the change up within TenantConfigCacheSeconds; every posting re-checks limits and countries (a lowered cap
        is enforced at the next credit; balances already above it are flagged by the tier_enforcement job)."""
        current = self.get_tenant(tenant_id)
        changes: dict[str, Any] = {}
        if not isinstance(tier_limits, _Unset):
            overrides = check_overrides(tier_limits)
            if overrides != current.tier_limits:
                changes["tier_limits"] = overrides
        if not isinstance(jurisdictions, _Unset):
            if jurisdictions is None:
                raise ValidationFailed(
                    "jurisdictions cannot be null", errors=[{"loc": ["body", "jurisdictions"], "msg": "a list"}]
                )
            check_tenant_jurisdictions(jurisdictions)
            wanted = sorted(set(jurisdictions))
            if tuple(wanted) != current.jurisdictions:
                changes["jurisdictions"] = wanted
        for name, wanted_adapter in providers.items():
            # Which adapter serves the tenant from now on (docs/providers.md); what was handed to the previous one
            # finishes there (a funding settles by its webhooks, a stored FX quote is executed by its provider).
            if name not in PROVIDER_SETTINGS:
                raise ValidationFailed(
                    f"{name} cannot be changed", errors=[{"loc": ["body", name], "msg": "set at creation only"}]
                )
            if isinstance(wanted_adapter, _Unset) or wanted_adapter is None:
                continue
            adapter = adapter_name(name, wanted_adapter)
            if adapter != current.to_dict()[name]:
                changes[name] = adapter
        if not changes:
            return current.to_dict() | {"changed": []}
        before = {name: current.to_dict()[name] for name in changes}
        store.change_tenant_config(
            tenant_id,
            expected_version=current.config_version or None,
            tier_limits=changes.get("tier_limits", _KEEP),
            jurisdictions=changes.get("jurisdictions"),
            providers={name: changes[name] for name in PROVIDER_SETTINGS if name in changes},
            audit=audit_event(
                tenant_id=tenant_id,
                action="tenant.config_changed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=tenant_id,
                payload={"before": before, "after": changes, "version": current.config_version + 1},
            ),
        )
        self.forget(tenant_id)
        return self.get_tenant(tenant_id).to_dict() | {"changed": sorted(changes)}

    def forget(self, tenant_id: str) -> None:
        """Drop this container's cached configuration of the tenant (after a change made here)."""
        with self._cache_lock:
            self._cache.pop(tenant_id, None)

    def require_capability(
        self, tenant_id: str, capability: Capability, caller: Caller | None = None
    ) -> dict[str, str]:
        """The gating decision recorded with a posting; CapabilityDisabled unless the capability is live.

        In shadow mode the refusal is also recorded as an audit event `capability.shadow_decision` (who asked for
        what, under which correlation id), so a tenant's traffic can be observed before the capability goes live;
        nothing is created or posted (docs/capabilities-and-freezes.md)."""
        mode = self.tenant_config(tenant_id).capabilities.get(capability.value, Mode.DISABLED.value)
        if allows(mode):
            return {"capability": capability.value, "mode": mode}
        if mode == Mode.SHADOW.value:
            audit_store.append(
                audit_event(
                    tenant_id=tenant_id,
                    action="capability.shadow_decision",
                    actor=caller.actor if caller else SHADOW_GATE_ACTOR,
                    correlation_id=caller.correlation_id if caller else "",
                    subject_id=capability.value,
                    payload={"capability": capability.value, "mode": mode, "decision": "refused", "posted": False},
                )
            )
            raise CapabilityDisabled(
                f"capability '{capability.value}' is in shadow mode for this tenant: the request was recorded, "
                "nothing was created or posted"
            )
        raise CapabilityDisabled(f"capability '{capability.value}' is {mode} for this tenant")

    # ---- keys
    def issue_tenant_key(self, caller: Caller, tenant_id: str) -> IssuedKey:
        issued = keys.generate()
        self._store_key(
            issued,
            kind="tenant",
            tenant_id=tenant_id,
            role="tenant",
            name=None,
            created_by=caller.actor,
            correlation_id=caller.correlation_id,
        )
        return issued

    def create_admin_key(
        self, *, name: str, role: str = "admin", created_by: str = "system:bootstrap", correlation_id: str = "bootstrap"
    ) -> IssuedKey:
        if role not in ADMIN_ROLES:
            raise ValueError(f"role must be one of {ADMIN_ROLES}")
        issued = keys.generate()
        self._store_key(
            issued,
            kind="admin",
            tenant_id=None,
            role=role,
            name=name,
            created_by=created_by,
            correlation_id=correlation_id,
        )
        return issued

    def revoke_tenant_key(self, caller: Caller, tenant_id: str, key_id: str) -> dict[str, str]:
        revoked_at = now_rfc3339()
        store.revoke_credential(
            key_id,
            tenant_id,
            revoked_at,
            caller.actor,
            audit_event(
                tenant_id=tenant_id,
                action="api_key.revoked",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=key_id,
                payload={"key_id": key_id, "tenant_id": tenant_id, "revoked_at": revoked_at},
            ),
        )
        return {"key_id": key_id, "tenant_id": tenant_id, "status": "revoked", "revoked_at": revoked_at}

    def authenticate(self, api_key: str, *, kind: str) -> Principal:
        """The principal behind `api_key`, which must be an active key of `kind`; Unauthorized otherwise.
        The same error for every failure, so a caller learns nothing about which part was wrong."""
        parsed = keys.parse(api_key)
        if parsed is None:
            raise Unauthorized("invalid API key")
        key_id, secret = parsed
        item = store.find_credential_item(key_id)
        pepper = secret_bytes(settings().api_key_pepper_secret)
        if item is None or not keys.matches(pepper, key_id, secret, item.secret_hash):
            raise Unauthorized("invalid API key")
        if item.status != "active" or item.kind != kind:
            raise Unauthorized("invalid API key")
        return Principal(key_id=key_id, kind=item.kind, tenant_id=item.tenant_id, role=item.role)

    def _store_key(
        self,
        issued: IssuedKey,
        *,
        kind: str,
        tenant_id: str | None,
        role: str,
        name: str | None,
        created_by: str,
        correlation_id: str,
    ) -> None:
        secret = issued.api_key.rsplit(".", 1)[1]
        pepper = secret_bytes(settings().api_key_pepper_secret)
        created_at = now_rfc3339()
        item = CredentialItem(
            issued.key_id,
            kind=kind,
            tenant_id=tenant_id,
            role=role,
            name=name,
            secret_hash=keys.keyed_hash(pepper, issued.key_id, secret),
            status="active",
            created_at=created_at,
            created_by=created_by,
        )
        store.create_credential(
            item,
            audit_event(
                tenant_id=tenant_id or PLATFORM_TENANT,
                action="api_key.created",
                actor=created_by,
                correlation_id=correlation_id,
                subject_id=issued.key_id,
                payload={
                    "key_id": issued.key_id,
                    "kind": kind,
                    "role": role,
                    "tenant_id": tenant_id,
                    "name": name,
                    "created_at": created_at,
                },
            ),
        )


def _open_banking_adapter(name: str) -> str:
    return adapter_name("open_banking_provider", name)


def adapter_name(setting: str, name: str) -> str:
    """`name` if an adapter of that name is registered for the port `setting` selects (ValidationFailed, located
    at that field, otherwise). Imported late: the port modules load plugin modules, which may import the kernel."""
    from moncore.providers import cards, fx, kyc, open_banking, screening  # noqa: PLC0415
    from moncore.providers.plugins import Adapters  # noqa: PLC0415

    lookups: dict[str, Adapters[Any]] = {
        "open_banking_provider": open_banking.ADAPTERS,
        "fx_provider": fx.ADAPTERS,
        "kyc_provider": kyc.ADAPTERS,
        "screening_provider": screening.ADAPTERS,
        "card_issuer": cards.ISSUERS,
        "card_processor": cards.PROCESSORS,
    }
    if setting not in lookups:
        raise ValidationFailed(f"unknown setting {setting}", errors=[{"loc": ["body", setting], "msg": "unknown"}])
    lookups[setting].get(name)
    return name


def _to_config(item: TenantItem) -> TenantConfig:
    return TenantConfig(
        id=item.pk,
        name=item.name,
        jurisdictions=tuple(str(code) for code in item.jurisdictions),
        capabilities=plain_map(item.capabilities),
        open_banking_provider=item.open_banking_provider,
        fx_provider=item.fx_provider,
        status=item.status,
        created_at=item.created_at,
        tier_limits=dict(item.tier_limits or {}),
        kyc_provider=item.kyc_provider,
        config_version=int(item.config_version or 0),
        card_issuer=item.card_issuer,
        card_processor=item.card_processor,
        screening_provider=item.screening_provider,
    )
