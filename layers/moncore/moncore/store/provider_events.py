"""The inbox of provider lifecycle events: recognise redeliveries, park events that arrived before their
prerequisite, and find the parked ones again when the prerequisite lands. Events that carry the processor's
`sequence` also leave a marker when closed (applied or rejected), which the next event of the same authorisation
waits for."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import PutError

from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.store.models import ProviderEventItem, ProviderSequenceItem, tenant_key

RECEIVED = "RECEIVED"
PARKED = "PARKED"
APPLIED = "APPLIED"
REJECTED = "REJECTED"


def receive(
    tenant_id: str, provider: str, event_id: str, txn_id: str, payload: dict[str, Any], *, correlation_id: str = ""
) -> ProviderEventItem:
    """Record the event once (with the correlation id of its first delivery); a redelivery returns the stored record
    (whatever its status) unchanged."""
    now = now_rfc3339()
    item = ProviderEventItem(
        tenant_key(tenant_id, provider, event_id),
        tenant_id=tenant_id,
        provider=provider,
        event_id=event_id,
        txn_id=txn_id,
        payload=payload,
        payload_hash=sha256_hex(payload),
        status=RECEIVED,
        correlation_id=correlation_id or None,
        received_at=now,
        updated_at=now,
    )
    try:
        item.save(condition=ProviderEventItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return ProviderEventItem.get(item.pk, consistent_read=True)
    return item


def park(item: ProviderEventItem) -> None:
    item.update(
        actions=[
            ProviderEventItem.status.set(PARKED),
            ProviderEventItem.parked_txn_key.set(tenant_key(item.tenant_id, item.txn_id)),
            ProviderEventItem.updated_at.set(now_rfc3339()),
        ]
    )


def close(item: ProviderEventItem, status: str, outcome: str = "") -> None:
    """APPLIED or REJECTED (with the refusal's code): final; the event leaves the parked index."""
    item.update(
        actions=[
            ProviderEventItem.status.set(status),
            ProviderEventItem.outcome.set(outcome),
            ProviderEventItem.parked_txn_key.remove(),
            ProviderEventItem.updated_at.set(now_rfc3339()),
        ]
    )


def parked_for(tenant_id: str, txn_id: str) -> list[ProviderEventItem]:
    """Events waiting for `txn_id`, in arrival order."""
    return list(ProviderEventItem.parked_by_txn.query(tenant_key(tenant_id, txn_id)))


def sequence_key(tenant_id: str, txn_id: str, sequence: int) -> str:
    return tenant_key(tenant_id, "seq", txn_id, f"{sequence:06d}")


def mark_closed(tenant_id: str, txn_id: str, sequence: int, event_id: str, status: str) -> None:
    """Event `sequence` of the transaction is closed (APPLIED or REJECTED); writing it again changes nothing."""
    ProviderSequenceItem(
        sequence_key(tenant_id, txn_id, sequence),
        tenant_id=tenant_id,
        txn_id=txn_id,
        sequence=sequence,
        event_id=event_id,
        status=status,
        closed_at=now_rfc3339(),
    ).save()


def sequence_closed(tenant_id: str, txn_id: str, sequence: int) -> bool:
    """Whether event `sequence` of the transaction was closed (sequence 0: there is nothing before the first)."""
    if sequence < 1:
        return True
    try:
        ProviderSequenceItem.get(sequence_key(tenant_id, txn_id, sequence), consistent_read=True)
    except ProviderSequenceItem.DoesNotExist:
        return False
    return True
