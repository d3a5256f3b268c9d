"""Job leases: one conditional put takes the lease when nobody holds it or the holder's lease lapsed; release is a
conditional delete by the holder only. A lease outlives the Jobs function's timeout, so it only lapses once its
holder cannot still be running."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError, PutError

from moncore.store.models import LeaseItem, tenant_key


def acquire(tenant_id: str, job: str, *, owner_token: str, now_s: int, lease_s: int, acquired_at: str) -> bool:
    """True when this caller now holds the lease."""
    item = LeaseItem(
        tenant_key(tenant_id, "lease", job),
        owner_token=owner_token,
        leased_until=now_s + lease_s,
        acquired_at=acquired_at,
        expires_at=now_s + lease_s + 86_400,
    )
    try:
        item.save(condition=LeaseItem.pk.does_not_exist() | (LeaseItem.leased_until < now_s))
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release(tenant_id: str, job: str, *, owner_token: str) -> None:
    """Give the lease back; a lease taken over after it lapsed is left to its new holder."""
    try:
        LeaseItem(tenant_key(tenant_id, "lease", job)).delete(condition=LeaseItem.owner_token == owner_token)
    except DeleteError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
