"""Tenants and API credentials. Each change is written with its audit event in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import ConcurrencyConflict, NotFound
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import CredentialItem, TenantItem
from moncore.store.transact import ConditionFailed, TxBuilder


def create_tenant(item: TenantItem, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.put("tenant", item, TenantItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    tx.execute()


KEEP: Any = object()  # change_tenant_config: leave the tier limit overrides as they are


# The tenant's provider adapters an admin may change (docs/providers.md); card adapters are set at creation only.
PROVIDER_ATTRIBUTES = {
    "open_banking_provider": TenantItem.open_banking_provider,
    "fx_provider": TenantItem.fx_provider,
    "kyc_provider": TenantItem.kyc_provider,
    "screening_provider": TenantItem.screening_provider,
}


def change_tenant_config(
    tenant_id: str,
    *,
    expected_version: int | None,
    tier_limits: Any = KEEP,
    jurisdictions: list[str] | None = None,
    providers: Mapping[str, str] | None = None,
    audit: AuditEvent,
) -> None:
    """Set the tenant's tier limit overrides ({} or None: none), jurisdictions and/or provider adapters (attribute
    name -> adapter name, among PROVIDER_ATTRIBUTES), bump config_version, with the audit event, if the version is
    still `expected_version` (None: never changed). Raises ConcurrencyConflict (another change came first) or
    NotFound."""
    actions: list[Any] = [TenantItem.config_version.set((expected_version or 0) + 1)]
    if tier_limits is not KEEP:
        actions.append(TenantItem.tier_limits.set(tier_limits) if tier_limits else TenantItem.tier_limits.remove())
    if jurisdictions is not None:
        actions.append(TenantItem.jurisdictions.set(cast(Any, jurisdictions)))  # stubs type list items oddly
    for name, adapter in (providers or {}).items():
        actions.append(PROVIDER_ATTRIBUTES[name].set(adapter))
    version = (
        TenantItem.config_version.does_not_exist()
        if expected_version is None
        else TenantItem.config_version == expected_version
    )
    tx = TxBuilder()
    tx.update("tenant", TenantItem(tenant_id), actions, TenantItem.pk.exists() & version)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        if find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found") from None
        raise ConcurrencyConflict("the tenant's configuration changed meanwhile; read it again and retry") from None


def find_tenant_item(tenant_id: str) -> TenantItem | None:
    try:
        return TenantItem.get(tenant_id, consistent_read=True)
    except TenantItem.DoesNotExist:
        return None


def tenant_ids() -> list[str]:
    """Every tenant's id (a Scan of the Tenants table: small, read only by scheduled jobs that cover all tenants)."""
    return sorted(item.pk for item in TenantItem.scan(attributes_to_get=["pk"]))


def create_credential(item: CredentialItem, audit: AuditEvent) -> None:
    """For tenant keys, the tenant must exist and be active (checked in the same transaction)."""
    tx = TxBuilder()
    if item.tenant_id is not None:
        tx.check("tenant", TenantItem, item.tenant_id, TenantItem.pk.exists() & (TenantItem.status == "ACTIVE"))
    tx.put("credential", item, CredentialItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if failed.labels[0] == "tenant":
            raise NotFound(f"tenant {item.tenant_id} not found") from None
        raise


def find_credential_item(key_id: str) -> CredentialItem | None:
    try:
        return CredentialItem.get(key_id, consistent_read=True)
    except CredentialItem.DoesNotExist:
        return None


def revoke_credential(key_id: str, tenant_id: str, revoked_at: str, revoked_by: str, audit: AuditEvent) -> None:
    """Mark a tenant's key revoked; NotFound when the key is not this tenant's. Revoking twice is harmless."""
    tx = TxBuilder()
    tx.update(
        "credential",
        CredentialItem(key_id),
        [
            CredentialItem.status.set("revoked"),
            CredentialItem.revoked_at.set(revoked_at),
            CredentialItem.revoked_by.set(revoked_by),
        ],
        CredentialItem.pk.exists() & (CredentialItem.tenant_id == tenant_id),
    )
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise NotFound(f"api key {key_id} not found") from None
