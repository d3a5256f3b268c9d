"""Sealing (DESIGN.md invariant 12; docs/audit.md): per tenant, the ledger legs and audit events recorded since the
last block are hashed, put in a Merkle tree, chained to the previous block, signed with KMS (ECC_NIST_P256), written
once to the Seals table and copied to the Object Lock bucket. Also the partner's inclusion proof of a transaction's
legs and the chain-integrity check (`verify_chain`).

Nothing here runs on the posting path: the seal job reads what postings already wrote (the legs index and the audit
partitions) on its own schedule.

Which items are new (the cursor). Every sealable item sorts by its own immutable sort key, "<recorded_at>#<id>...":
a leg's entry_sk, an audit event's sk. A writer stamps recorded_at before its write commits, so an item can become
visible after a later-stamped one; a cursor "everything after the last sealed item" would then skip it forever. So
each run starts from the last block's creation instant minus LATE_WINDOW_S (longer than any writer can hold a stamped
item: the longest Lambda timeout, plus index propagation and clock skew), lists every item after that point, and
drops the ones the blocks of that window already seal. The window is re-read every run (a bounded cost, measured by
the bench); in exchange an item is sealed by the first run after it commits, whatever its stamp, exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from moncore.domain.canonical import canonical_bytes
from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import NotFound, NotSealed
from moncore.domain.seals import (
    GENESIS_HASH,
    LEG,
    MAX_BLOCK_ITEMS,
    BlockSignature,
    ChainFailure,
    ItemRef,
    SealedBlock,
    block_hash,
    build_block,
    check_block,
    check_copy,
    check_coverage,
    check_items,
    cursor_instant,
    index_leaves,
    late_bound,
    leaf_of,
    signed_bytes,
    verify_signature,
)
from moncore.store import evidence, signing
from moncore.store import ledger as ledger_store
from moncore.store import seals as seals_store
from moncore.store import tenancy as tenancy_store

PROOF_FORMAT = "moncore-proof/1"
log = logging.getLogger("moncore.sealing")


class ChainBroken(Exception):
    """The tenant's last block does not verify: the sealer refuses to extend a chain it cannot vouch for."""


def copy_key(tenant_id: str, seq: int) -> str:
    """Where a block's locked copy lives in the evidence bucket (zero-padded so listings sort by seq)."""
    return f"seals/{tenant_id}/{seq:012d}.json"


@cache
def _public_key(key_id: str) -> bytes | None:
    """The public key of a key a block names (KMS GetPublicKey, once per key and container)."""
    try:
        return signing.public_key_der(key_id)
    except Exception:  # an unknown or inaccessible key is a verification failure, reported as such
        log.exception("no public key for %s", key_id)
        return None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _audit_days(tenant_id: str, after: str | None) -> tuple[str, str]:
    """The UTC days whose audit partitions may hold events after `after`: from its day (or, on a first run, the day
    before the tenant was created: its creation event may be stamped a moment before the tenant item) to tomorrow
    (a writer's clock slightly ahead)."""
    if after is not None:
        first = after[:10]
    else:
        tenant = tenancy_store.find_tenant_item(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        first = (date.fromisoformat(tenant.created_at[:10]) - timedelta(days=1)).isoformat()
    last = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    return first, last


def _stored_refs(tenant_id: str, after: str | None) -> list[ItemRef]:
    """Every sealable item of the tenant recorded after `after` (all of them when None)."""
    first, last = _audit_days(tenant_id, after)
    return seals_store.leg_refs(tenant_id, after) + seals_store.audit_refs(tenant_id, first, last, after)


def _check_head(head: SealedBlock) -> None:
    key = _public_key(head.signature.key_id)
    intact = block_hash(head.block) == head.block_hash
    if not intact or key is None or not verify_signature(head.block, head.signature, key):
        raise ChainBroken(f"block {head.seq} of tenant {head.block.get('tenant_id')} does not verify; not extending it")


# ---------------------------------------------------------------- sealing
def seal_tenant(tenant_id: str) -> dict[str, Any]:
    """Seal every item of the tenant not sealed yet, in blocks of at most MAX_BLOCK_ITEMS. Returns the blocks written,
    the number of items and the sealing lag (how long the oldest newly sealed item waited, in ms)."""
    started = now_rfc3339()  # the blocks' created_at: items committed before it are seen by this run
    head = seals_store.head(tenant_id)
    if head is not None:
        _check_head(head)
        _ensure_copy(tenant_id, head)
    after = None if head is None else late_bound(str(head.block["created_at"]))
    sealed_recently = (
        [] if after is None else seals_store.blocks_created_after(tenant_id, late_bound(after))
    )  # every block that may hold an item recorded after `after`
    already = {leaf.key for sealed in sealed_recently for leaf in sealed.leaves}
    new = sorted(ref for ref in _stored_refs(tenant_id, after) if ref.key not in already)
    if not new:
        return {"blocks": [], "items": 0, "head": None if head is None else head.seq, "max_lag_ms": 0}
    stored = seals_store.read_items(new)
    present = [ref for ref in new if stored[ref.key] is not None]  # listed by the index, gone from the table: skip
    written: list[int] = []
    previous = head
    for start in range(0, len(present), MAX_BLOCK_ITEMS):
        chunk = present[start : start + MAX_BLOCK_ITEMS]
        leaves = [leaf_of(ref, stored[ref.key] or {}) for ref in chunk]
        block = build_block(
            tenant_id=tenant_id,
            seq=1 if previous is None else previous.seq + 1,
            previous_block_hash=GENESIS_HASH if previous is None else previous.block_hash,
            leaves=leaves,
            created_at=started,
        )
        signature = signing.sign(signed_bytes(block))
        sealed = SealedBlock(
            block=block,
            block_hash=block_hash(block),
            signature=BlockSignature(signature.key_id, signature.algorithm, signature.signature_b64),
            leaves=tuple(leaves),
        )
        try:
            seals_store.append(tenant_id, sealed)
        except seals_store.ChainForked as forked:
            # Only if a run outlived its job lease: the other sealer's block stands, its items (or ours, next run)
            # are sealed once; this run stops here.
            log.warning("sealing %s stopped: %s", tenant_id, forked)
            return _sealed_summary(written, present, started, conflict=forked.seq)
        evidence.put_once(copy_key(tenant_id, sealed.seq), canonical_bytes(sealed.to_document()))
        written.append(sealed.seq)
        previous = sealed
    return _sealed_summary(written, present, started)


def _sealed_summary(
    written: list[int], present: Sequence[ItemRef], started: str, *, conflict: int | None = None
) -> dict[str, Any]:
    sealed_items = present[: len(written) * MAX_BLOCK_ITEMS]
    oldest = min((cursor_instant(ref.cursor) for ref in sealed_items), default=started)
    lag_ms = max(0, int((_instant(started) - _instant(oldest)).total_seconds() * 1000))
    summary: dict[str, Any] = {
        "blocks": written,
        "items": len(sealed_items),
        "head": written[-1] if written else None,
        "max_lag_ms": lag_ms,
    }
    if conflict is not None:
        summary["conflict"] = conflict
    return summary


def _ensure_copy(tenant_id: str, head: SealedBlock) -> None:
    """Blocks are written to the table first (the fork guard), then copied: a run that died in between left the head
    without its copy; write it now."""
    key = copy_key(tenant_id, head.seq)
    if not evidence.exists(key):
        log.warning("block %s of %s had no locked copy; writing it", head.seq, tenant_id)
        evidence.put_once(key, canonical_bytes(head.to_document()))


# ---------------------------------------------------------------- proofs
def transaction_proof(tenant_id: str, txn_id: str) -> dict[str, Any]:
    """For each leg of the transaction: the leg as stored, its item hash, its inclusion proof up to its block's
    merkle_root, and that block with its hash and signature (docs/audit.md, "Proof format"). Raises NotFound for an
    unknown (or another tenant's) transaction, NotSealed while a leg waits for the next seal run."""
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise NotFound(f"transaction {txn_id} not found")
    refs = [ItemRef(cursor=leg.entry_sk or "", kind=LEG, pk=leg.pk, sk=leg.sk) for leg in stored.legs]
    items = seals_store.read_items(refs)
    legs = []
    for ref in refs:
        sealed = seals_store.block_sealing(tenant_id, ref)
        if sealed is None:
            raise NotSealed(
                f"leg {ref.sk} of transaction {txn_id} is not sealed yet; the seal job runs every few minutes"
            )
        position = sealed.position(ref.key)
        legs.append(
            {
                "item": items[ref.key],
                "item_hash": sealed.leaves[position or 0].item_hash,
                "proof": sealed.proof(ref.key).to_json(),
                "block": sealed.block,
                "block_hash": sealed.block_hash,
                "signature": sealed.signature.to_json(),
            }
        )
    return {"format": PROOF_FORMAT, "txn_id": txn_id, "legs": legs}


# ---------------------------------------------------------------- chain integrity
def verify_chain(tenant_id: str) -> dict[str, Any]:
    """Recompute everything the tenant's seals commit to, from what is stored now: each block's place in the chain,
    hash and signature; its locked copy; the Merkle root over its leaves; every sealed item's hash; and that every
    stored item old enough is sealed exactly once. Stops at the FIRST failure and names it (block, item, expected and
    found values); the jobs runner audits the result and fails the run."""
    sealed_in: dict[tuple[str, str, str], int] = {}
    previous: SealedBlock | None = None
    blocks = items = 0
    for sealed in seals_store.all_blocks(tenant_id):
        failure = (
            check_block(sealed, previous, tenant_id=tenant_id, public_key=_public_key)
            or check_copy(sealed, evidence.read(copy_key(tenant_id, sealed.seq)))
            or check_items(sealed, seals_store.read_items(leaf.ref for leaf in sealed.leaves))
            or index_leaves(sealed, sealed_in)
        )
        if failure is not None:
            return _broken(failure, blocks, items)
        blocks += 1
        items += len(sealed.leaves)
        previous = sealed
    failure, pending = check_coverage(sealed_in, previous, _stored_refs(tenant_id, None))
    if failure is not None:
        return _broken(failure, blocks, items)
    return {"ok": True, "blocks": blocks, "items": items, "pending": pending, "head": previous and previous.seq}


def _broken(failure: ChainFailure, blocks: int, items: int) -> dict[str, Any]:
    log.error("chain check failed: %s", failure.detail)
    return {
        "ok": False,
        "error": "chain_broken",  # the jobs runner turns a result with an error into a failed run (non-zero)
        "code": failure.code,
        "detail": failure.detail,
        "failure": failure.to_json(),
        "blocks_verified": blocks,
        "items_verified": items,
    }
