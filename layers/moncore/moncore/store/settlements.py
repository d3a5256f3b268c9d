"""Settlement records (append-only table): written once per settlement id, read back by reruns and views."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from moncore.store.models import SettlementItem, tenant_key


def record_key(tenant_id: str, settlement_id: str) -> str:
    return tenant_key(tenant_id, settlement_id)


def find(tenant_id: str, settlement_id: str) -> SettlementItem | None:
    try:
        return SettlementItem.get(record_key(tenant_id, settlement_id), consistent_read=True)
    except SettlementItem.DoesNotExist:
        return None


def record_once(item: SettlementItem) -> SettlementItem:
    """Write the record unless it exists; answers the stored one either way (a concurrent or later run keeps the
    first record: the settlement's identity is its provider reference)."""
    try:
        item.save(condition=SettlementItem.pk.does_not_exist())
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        stored = find(item.tenant_id, item.settlement_id)
        if stored is None:
            raise
        return stored
    return item


def for_date(tenant_id: str, value_date: str) -> list[SettlementItem]:
    condition = SettlementItem.date_sk.startswith(f"{value_date}#")
    return list(SettlementItem.by_tenant_date.query(tenant_id, condition))
