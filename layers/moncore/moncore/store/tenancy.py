"""Tenants and API credentials. Each change is written with its audit event in one transaction."""

from __future__ import annotations

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import NotFound
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import CredentialItem, TenantItem
from moncore.store.transact import ConditionFailed, TxBuilder


def create_tenant(item: TenantItem, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.put("tenant", item, TenantItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    tx.execute()


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
