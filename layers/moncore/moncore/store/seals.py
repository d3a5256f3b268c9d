"""Seals persistence: the append-only Seals table, and the reads the sealer and the chain check make of the items they
seal (ledger legs and audit events), exactly as stored.

Items are read raw (DynamoDB's typed wire format, turned into plain JSON by domain.seals.plain_item) and never
through the PynamoDB models: a model only sees the attributes it declares and serialises them its own way, while a
seal must cover the item as DynamoDB holds it, every attribute included.

Where the sealer finds new items (its cursors are the items' own sort keys, "<recorded_at>#<id>..."):
- legs: the sparse Ledger index `legs_by_tenant` (tenant_id, entry_sk), KEYS_ONLY. Legs already carry both
  attributes, so the index changes nothing the posting writes; headers and lifecycle events have no entry_sk and
  stay out of it.
- audit events: the Audit table itself, partition `tenant#YYYY-MM-DD`, sort key `recorded_at#event_id`, one Query per
  day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from pynamodb.exceptions import PutError

from moncore.config import settings
from moncore.domain.seals import (
    AUDIT,
    LEG,
    BlockSignature,
    ItemRef,
    Leaf,
    SealedBlock,
    plain_item,
)
from moncore.store.models import SealItem, tenant_key
from moncore.store.transact import connection

LEGS_INDEX = "legs_by_tenant"  # template.yaml LedgerTable GlobalSecondaryIndexes
_BATCH_KEYS = 100  # BatchGetItem's limit
_BATCH_ATTEMPTS = 8
_PROOF_CANDIDATES = 20  # blocks a proof looks at before answering "not sealed" (docs/audit.md, late items)


class ChainForked(Exception):
    """Another sealer already wrote this block number: nothing was written (the chain cannot fork)."""

    def __init__(self, tenant_id: str, seq: int) -> None:
        super().__init__(f"block {seq} of tenant {tenant_id} already exists")
        self.tenant_id = tenant_id
        self.seq = seq


# ---------------------------------------------------------------- blocks
def _sealed(item: SealItem) -> SealedBlock:
    return SealedBlock(
        block=dict(item.block),
        block_hash=item.block_hash,
        signature=BlockSignature(item.key_id, item.algorithm, item.signature_b64),
        leaves=tuple(Leaf.from_json(leaf) for leaf in item.leaves or []),
    )


def append(tenant_id: str, sealed: SealedBlock) -> None:
    """Write block `sealed.seq` once: attribute_not_exists on (tenant, seq). Raises ChainForked when it exists."""
    block = sealed.block
    item = SealItem(
        tenant_id,
        sealed.seq,
        block=block,
        block_hash=sealed.block_hash,
        key_id=sealed.signature.key_id,
        algorithm=sealed.signature.algorithm,
        signature_b64=sealed.signature.value_b64,
        leaves=[leaf.to_json() for leaf in sealed.leaves],
        first_item=str(block["first_item"]),
        last_item=str(block["last_item"]),
        created_at=str(block["created_at"]),
    )
    try:
        item.save(condition=SealItem.pk.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise ChainForked(tenant_id, sealed.seq) from None
        raise


def head(tenant_id: str) -> SealedBlock | None:
    """The tenant's latest block (consistent read), or None before the first one."""
    for item in SealItem.query(tenant_id, scan_index_forward=False, limit=1, consistent_read=True):
        return _sealed(item)
    return None


def blocks_created_after(tenant_id: str, instant: str) -> list[SealedBlock]:
    """The tenant's blocks created after `instant`, newest first (blocks are created in seq order)."""
    found = []
    for item in SealItem.query(tenant_id, scan_index_forward=False, consistent_read=True):
        if item.created_at <= instant:
            break
        found.append(_sealed(item))
    return found


def all_blocks(tenant_id: str) -> Iterator[SealedBlock]:
    """Every block of the tenant in seq order (consistent reads, page by page)."""
    for item in SealItem.query(tenant_id, scan_index_forward=True, consistent_read=True):
        yield _sealed(item)


def block_sealing(tenant_id: str, ref: ItemRef) -> SealedBlock | None:
    """The block that seals `ref`, or None while it is not sealed. Candidates are the blocks whose last item sorts at
    or after the item's cursor, in that order; the first of them seals it unless the item committed late."""
    candidates = SealItem.by_last_item.query(
        tenant_id, SealItem.last_item >= ref.cursor, scan_index_forward=True, limit=_PROOF_CANDIDATES
    )
    for candidate in candidates:
        if candidate.first_item > ref.cursor:
            continue  # starts after the item: cannot hold it
        item = SealItem.get(tenant_id, candidate.seq, consistent_read=True)
        sealed = _sealed(item)
        if sealed.position(ref.key) is not None:
            return sealed
    return None


# ---------------------------------------------------------------- sealable items
def _query_pages(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    client: Any = connection().client  # botocore's DynamoDB client (its stubs do not know the operations)
    while True:
        page = client.query(**request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def leg_refs(tenant_id: str, after: str | None = None) -> list[ItemRef]:
    """Every leg of the tenant whose entry_sk sorts after `after` (all legs when None), from the legs index."""
    condition = "tenant_id = :t" + ("" if after is None else " AND entry_sk > :a")
    values: dict[str, Any] = {":t": {"S": tenant_id}}
    if after is not None:
        values[":a"] = {"S": after}
    request = {
        "TableName": settings().ledger_table,
        "IndexName": LEGS_INDEX,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    return [
        ItemRef(cursor=raw["entry_sk"]["S"], kind=LEG, pk=raw["pk"]["S"], sk=raw["sk"]["S"])
        for raw in _query_pages(request)
    ]


def audit_refs(tenant_id: str, first_day: str, last_day: str, after: str | None = None) -> list[ItemRef]:
    """Every audit event of the tenant recorded on the UTC days first_day..last_day (YYYY-MM-DD, inclusive) whose
    sort key sorts after `after` (all of them when None): one consistent Query per day partition."""
    refs: list[ItemRef] = []
    day, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
    while day <= last:
        values: dict[str, Any] = {":p": {"S": tenant_key(tenant_id, day.isoformat())}}
        condition = "pk = :p"
        if after is not None:
            condition += " AND sk > :a"
            values[":a"] = {"S": after}
        request = {
            "TableName": settings().audit_table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "pk, sk",
            "ConsistentRead": True,
        }
        refs += [
            ItemRef(cursor=raw["sk"]["S"], kind=AUDIT, pk=raw["pk"]["S"], sk=raw["sk"]["S"])
            for raw in _query_pages(request)
        ]
        day += timedelta(days=1)
    return refs


def read_items(refs: Iterable[ItemRef]) -> dict[tuple[str, str, str], dict[str, Any] | None]:
    """The items as stored now (consistent BatchGetItem over the Ledger and Audit tables), as plain JSON, by
    (kind, pk, sk); None for an item that is not stored."""
    tables = {LEG: settings().ledger_table, AUDIT: settings().audit_table}
    kinds = {table: kind for kind, table in tables.items()}
    wanted = list(dict.fromkeys(ref.key for ref in refs))
    found: dict[tuple[str, str, str], dict[str, Any] | None] = dict.fromkeys(wanted)
    client: Any = connection().client
    for start in range(0, len(wanted), _BATCH_KEYS):
        request: dict[str, Any] = {}
        for kind, pk, sk in wanted[start : start + _BATCH_KEYS]:
            keys = request.setdefault(tables[kind], {"Keys": [], "ConsistentRead": True})["Keys"]
            keys.append({"pk": {"S": pk}, "sk": {"S": sk}})
        for _ in range(_BATCH_ATTEMPTS):
            if not request:
                break
            answer = client.batch_get_item(RequestItems=request)
            for table, items in answer.get("Responses", {}).items():
                for raw in items:
                    found[(kinds[table], raw["pk"]["S"], raw["sk"]["S"])] = plain_item(raw)
            request = answer.get("UnprocessedKeys") or {}
        if request:
            raise RuntimeError("BatchGetItem left keys unprocessed after retries")  # throttled: the run fails
    return found


# ---------------------------------------------------------------- exports (moncore/audit/exports.py)
def scope_legs(tenant_id: str, scope_from: str, scope_to: str) -> Iterator[dict[str, Any]]:
    """The tenant's legs recorded in [scope_from, scope_to), as stored (plain JSON), in cursor order: the legs index
    page by page, each page's items read consistently in batches. Memory: one index page."""
    request = {
        "TableName": settings().ledger_table,
        "IndexName": LEGS_INDEX,
        # entry_sk is "<recorded_at>#...": never equal to a bare instant, so BETWEEN is [from, to) on recorded_at.
        "KeyConditionExpression": "tenant_id = :t AND entry_sk BETWEEN :f AND :u",
        "ExpressionAttributeValues": {":t": {"S": tenant_id}, ":f": {"S": scope_from}, ":u": {"S": scope_to}},
    }
    batch: list[ItemRef] = []
    for raw in _query_pages(request):
        batch.append(ItemRef(cursor=raw["entry_sk"]["S"], kind=LEG, pk=raw["pk"]["S"], sk=raw["sk"]["S"]))
        if len(batch) == _BATCH_KEYS:
            yield from _stored_in_order(batch)
            batch = []
    yield from _stored_in_order(batch)


def _stored_in_order(refs: list[ItemRef]) -> Iterator[dict[str, Any]]:
    found = read_items(refs)
    for ref in refs:
        item = found[ref.key]
        if item is not None:  # listed by the index, not in the table: nothing to export (the chain check reports it)
            yield item


def scope_audit_events(tenant_id: str, scope_from: str, scope_to: str) -> Iterator[dict[str, Any]]:
    """The tenant's audit events recorded in [scope_from, scope_to), as stored (plain JSON), in cursor order: one
    consistent Query per UTC day partition, page by page."""
    day, last = date.fromisoformat(scope_from[:10]), date.fromisoformat(scope_to[:10])
    while day <= last:
        request = {
            "TableName": settings().audit_table,
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :f AND :u",
            "ExpressionAttributeValues": {
                ":p": {"S": tenant_key(tenant_id, day.isoformat())},
                ":f": {"S": scope_from},
                ":u": {"S": scope_to},
            },
            "ConsistentRead": True,
        }
        for raw in _query_pages(request):
            yield plain_item(raw)
        day += timedelta(days=1)


def blocks_covering(tenant_id: str, scope_from: str, scope_to: str) -> Iterator[SealedBlock]:
    """The contiguous run of the tenant's blocks lo..hi that holds every sealed item recorded in [scope_from,
    scope_to), in seq order. A block holds such an item only if its last item sorts at or after scope_from and its
    first item before scope_to (leaves are sorted); lo and hi are the first and last such blocks (the by_last_item
    index gives each block's first and last item), and the blocks in between come too so the run is one unbroken
    piece of the chain."""
    seqs = [
        int(entry.seq)
        for entry in SealItem.by_last_item.query(tenant_id, SealItem.last_item >= scope_from)
        if entry.first_item < scope_to
    ]
    if not seqs:
        return
    for item in SealItem.query(
        tenant_id, SealItem.seq.between(min(seqs), max(seqs)), scan_index_forward=True, consistent_read=True
    ):
        yield _sealed(item)
