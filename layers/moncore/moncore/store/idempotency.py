"""Idempotency records: claim a (tenant, key) before executing, store the final response after.

A claim is one conditional put: it succeeds when no record exists, when the record expired (TTL deletion is lazy), or
when an earlier execution's lock lapsed (its Lambda died mid-way). Taking over a lapsed lock is safe because
the ledger's
transaction id is derived from the same key: a posting that did happen is found, never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DeleteError, PutError, UpdateError

from moncore.store.models import IdempotencyItem, plain_map, tenant_key


@dataclass(frozen=True, slots=True)
class Existing:
    status: str
    fingerprint: dict[str, str]
    request_hash: str
    response_status: int | None
    response_body: str | None


def claim(
    tenant_id: str,
    key: str,
    *,
    fingerprint: dict[str, str],
    request_hash: str,
    lock_token: str,
    now_s: int,
    lock_s: int,
    ttl_s: int,
    created_at: str,
) -> Existing | None:
    """None when this caller now owns the key; otherwise the record that holds it (read consistently)."""
    item = IdempotencyItem(
        tenant_key(tenant_id, key),
        status="IN_PROGRESS",
        lock_token=lock_token,
        locked_until=now_s + lock_s,
        fingerprint=fingerprint,
        request_hash=request_hash,
        created_at=created_at,
        expires_at=now_s + ttl_s,
    )
    free = (
        IdempotencyItem.pk.does_not_exist()
        | (IdempotencyItem.expires_at < now_s)
        | ((IdempotencyItem.status == "IN_PROGRESS") & (IdempotencyItem.locked_until < now_s))
    )
    try:
        item.save(condition=free)
        return None
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    try:
        held = IdempotencyItem.get(tenant_key(tenant_id, key), consistent_read=True)
    except IdempotencyItem.DoesNotExist:  # expired and deleted between our two calls: claim again
        return claim(
            tenant_id,
            key,
            fingerprint=fingerprint,
            request_hash=request_hash,
            lock_token=lock_token,
            now_s=now_s,
            lock_s=lock_s,
            ttl_s=ttl_s,
            created_at=created_at,
        )
    return Existing(
        held.status, plain_map(held.fingerprint), held.request_hash, _opt_int(held.response_status), held.response_body
    )


def complete(tenant_id: str, key: str, *, lock_token: str, status: int, body: str) -> None:
    """Store the final response; only the lock holder may (a lapsed lock taken over by another caller wins)."""
    try:
        IdempotencyItem(tenant_key(tenant_id, key)).update(
            actions=[
                IdempotencyItem.status.set("COMPLETED"),
                IdempotencyItem.response_status.set(status),
                IdempotencyItem.response_body.set(body),
            ],
            condition=IdempotencyItem.lock_token == lock_token,
            add_version_condition=False,
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def release(tenant_id: str, key: str, *, lock_token: str) -> None:
    """Forget an execution that ended in a retryable failure, so the client's retry with the same key runs again."""
    try:
        IdempotencyItem(tenant_key(tenant_id, key)).delete(
            condition=IdempotencyItem.lock_token == lock_token, add_version_condition=False
        )
    except DeleteError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))
