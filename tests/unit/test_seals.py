"""Seals as pure data (moncore.domain.seals): item hashes over RFC 8785 JSON of the stored item, blocks and their hash
chain, signatures with a real P-256 key, and the chain checks naming the FIRST failure precisely."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moncore.domain.merkle import ProofStep
from moncore.domain.seals import (
    AUDIT,
    GENESIS_HASH,
    LEG,
    MAX_BLOCK_ITEMS,
    BlockSignature,
    ChainFailure,
    ItemRef,
    Leaf,
    SealedBlock,
    SealFormatError,
    block_hash,
    build_block,
    check_block,
    check_copy,
    check_coverage,
    check_items,
    index_leaves,
    item_hash,
    late_bound,
    leaf_of,
    plain_item,
    signed_bytes,
    stream_tenants,
    verify_item_proof,
    verify_signature,
)

TENANT = "ten_1"
KEY = ec.generate_private_key(ec.SECP256R1())
KEY_ID = "arn:aws:kms:eu-west-1:123456789012:key/test"
PUBLIC_DER = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
Stored = dict[tuple[str, str, str], dict[str, Any] | None]


def public_key(key_id: str) -> bytes | None:
    return PUBLIC_DER if key_id == KEY_ID else None


def sign(block: dict[str, Any], key: ec.EllipticCurvePrivateKey = KEY) -> BlockSignature:
    """As KMS signs RAW messages with ECDSA_SHA_256: a DER signature over SHA-256 of the bytes."""
    raw = key.sign(signed_bytes(block), ec.ECDSA(hashes.SHA256()))
    return BlockSignature(KEY_ID, "ECDSA_SHA_256", base64.b64encode(raw).decode())


def leg(n: int, at: str) -> tuple[ItemRef, dict[str, Any]]:
    txn = f"txn_{n:04d}"
    item = {
        "pk": f"{TENANT}#{txn}",
        "sk": "LEG#0001#01",
        "tenant_id": TENANT,
        "txn_id": txn,
        "entry_sk": f"{at}#{txn}#0001#01",
        "account_id": "acc_1",
        "currency": "EUR",
        "leg_amount_minor": 100 * n,
        "phase": "SETTLED",
        "recorded_at": at,
    }
    return ItemRef(item["entry_sk"], LEG, item["pk"], item["sk"]), item


def event(n: int, at: str) -> tuple[ItemRef, dict[str, Any]]:
    item = {
        "pk": f"{TENANT}#{at[:10]}",
        "sk": f"{at}#evt_{n:04d}",
        "tenant_id": TENANT,
        "action": "transfer.created",
        "actor": "key:k1",
        "correlation_id": "c1",
        "payload": json.dumps({"n": n}),
        "payload_hash": hashlib.sha256(b"x").hexdigest(),
        "recorded_at": at,
    }
    return ItemRef(item["sk"], AUDIT, item["pk"], item["sk"]), item


def instant(minute: int, second: int) -> str:
    return f"2026-11-22T10:{minute:02d}:{second:02d}.000000Z"


def chain(blocks: int = 3, per_block: int = 4) -> tuple[list[SealedBlock], Stored, list[ItemRef]]:
    """A valid chain of `blocks` blocks, each sealing legs and audit events; the stored items; every item's ref."""
    sealed: list[SealedBlock] = []
    stored: Stored = {}
    refs: list[ItemRef] = []
    previous = GENESIS_HASH
    for b in range(blocks):
        made = [(leg if i % 2 == 0 else event)(b * per_block + i, instant(b, i)) for i in range(per_block)]
        made.sort()
        leaves = [leaf_of(ref, item) for ref, item in made]
        for ref, item in made:
            stored[ref.key] = item
            refs.append(ref)
        block = build_block(
            tenant_id=TENANT, seq=b + 1, previous_block_hash=previous, leaves=leaves, created_at=instant(b, 59)
        )
        sealed.append(SealedBlock(block, block_hash(block), sign(block), tuple(leaves)))
        previous = block_hash(block)
    return sealed, stored, refs


def first_failure(blocks: list[SealedBlock], stored: Stored, refs: list[ItemRef]) -> ChainFailure | None:
    """What the chain job does, over in-memory data: blocks in order, then coverage."""
    previous: SealedBlock | None = None
    sealed_in: dict[tuple[str, str, str], int] = {}
    for sealed in blocks:
        failure = (
            check_block(sealed, previous, tenant_id=TENANT, public_key=public_key)
            or check_items(sealed, stored)
            or index_leaves(sealed, sealed_in)
        )
        if failure:
            return failure
        previous = sealed
    return check_coverage(sealed_in, previous, refs)[0]


def resign(sealed: SealedBlock, **changes: Any) -> SealedBlock:
    """The block with changed fields, rehashed and validly signed: only the chain's other checks can catch it."""
    block = {**sealed.block, **changes}
    return replace(sealed, block=block, block_hash=block_hash(block), signature=sign(block))


# ---------------------------------------------------------------- items
def test_the_item_hash_is_sha256_of_the_rfc8785_json_of_the_stored_item() -> None:
    typed = {
        "pk": {"S": "ten_1#txn_1"},
        "leg_amount_minor": {"N": "-2550"},
        "fx": {"NULL": True},
        "open": {"BOOL": False},
        "fingerprint": {"M": {"b": {"S": "2"}, "a": {"S": "1"}}},
        "tags": {"SS": ["z", "a"]},
        "list": {"L": [{"N": "1"}, {"S": "é"}]},
    }
    item = plain_item(typed)
    assert item == {
        "pk": "ten_1#txn_1",
        "leg_amount_minor": -2550,
        "fx": None,
        "open": False,
        "fingerprint": {"b": "2", "a": "1"},
        "tags": ["a", "z"],
        "list": [1, "é"],
    }
    assert item_hash(item) == hashlib.sha256(rfc8785.dumps(item)).hexdigest()
    assert item_hash(item) == item_hash(dict(reversed(list(item.items()))))  # canonical: key order does not matter
    for name in item:
        assert item_hash({**item, name: "changed"}) != item_hash(item), name
    assert item_hash({**item, "leg_amount_minor": "-2550"}) != item_hash(item)  # a number is not its string


@pytest.mark.parametrize(
    "typed",
    [
        {"x": {"N": "1.5"}},
        {"x": {"N": str(2**53)}},
        {"x": {"B": "AA=="}},
        {"x": {"N": "abc"}},
        {"x": {"S": "a", "N": "1"}},
    ],
)
def test_items_that_cannot_be_hashed_exactly_are_refused(typed: dict[str, Any]) -> None:
    with pytest.raises(SealFormatError):
        plain_item(typed)


# ---------------------------------------------------------------- blocks
def test_a_block_commits_to_its_leaves_and_links_to_the_previous_block() -> None:
    blocks, _, refs = chain(2, 3)
    first, second = blocks
    assert first.block == {
        "format": "moncore-seal/1",
        "tenant_id": TENANT,
        "seq": 1,
        "previous_block_hash": GENESIS_HASH,
        "merkle_root": first.block["merkle_root"],
        "item_count": 3,
        "first_item": refs[0].cursor,
        "last_item": refs[2].cursor,
        "created_at": instant(0, 59),
    }
    assert (
        second.block["previous_block_hash"]
        == first.block_hash
        == hashlib.sha256(rfc8785.dumps(first.block)).hexdigest()
    )
    assert verify_signature(first.block, first.signature, PUBLIC_DER)
    assert not verify_signature(second.block, first.signature, PUBLIC_DER)
    assert SealedBlock.from_document(json.loads(json.dumps(first.to_document()))) == first


def test_blocks_refuse_empty_unsorted_oversized_or_misnumbered_leaves() -> None:
    made = sorted(leg(i, instant(0, i)) for i in range(3))
    leaves = [leaf_of(ref, item) for ref, item in made]
    kwargs: dict[str, Any] = {"tenant_id": TENANT, "previous_block_hash": GENESIS_HASH, "created_at": instant(1, 0)}
    for bad in ([], list(reversed(leaves)), [leaves[0], leaves[0]]):
        with pytest.raises(SealFormatError):
            build_block(seq=1, leaves=bad, **kwargs)
    with pytest.raises(SealFormatError):
        build_block(seq=0, leaves=leaves, **kwargs)
    many = [Leaf(ItemRef(f"{instant(0, 0)}#{i:06d}", LEG, "p", f"s{i}"), "0" * 64) for i in range(MAX_BLOCK_ITEMS + 1)]
    with pytest.raises(SealFormatError):
        build_block(seq=1, leaves=many, **kwargs)


def test_a_full_block_with_long_keys_fits_in_one_dynamodb_item() -> None:
    """The Seals table holds a block's leaves in one item (400 KB): MAX_BLOCK_ITEMS of MonCore's longest keys."""
    tenant, txn = "ten_" + "X" * 26, "txn_" + "Y" * 26
    leaves = [
        Leaf(
            ItemRef(f"2026-11-22T10:00:00.000000Z#{txn}#{i:04d}#01", LEG, f"{tenant}#{txn}", f"LEG#{i:04d}#01"),
            "f" * 64,
        )
        for i in range(MAX_BLOCK_ITEMS)
    ]
    block = build_block(
        tenant_id=tenant, seq=1, previous_block_hash=GENESIS_HASH, leaves=leaves, created_at=instant(0, 0)
    )
    document = SealedBlock(block, block_hash(block), sign(block), tuple(leaves)).to_document()
    assert len(json.dumps(document).encode()) < 350_000
    assert len(signed_bytes(block)) < 4096  # KMS signs RAW messages up to 4 KiB


# ---------------------------------------------------------------- the chain and its first failure
def test_an_untouched_chain_verifies() -> None:
    blocks, stored, refs = chain()
    assert first_failure(blocks, stored, refs) is None


def test_a_missing_block_is_named() -> None:
    blocks, stored, refs = chain(4)
    failure = first_failure([blocks[0], blocks[2], blocks[3]], stored, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq, failure.expected, failure.found) == ("sequence_gap", 3, "2", "3")


def test_an_altered_block_is_named_by_its_hash_then_by_its_signature() -> None:
    blocks, stored, refs = chain()
    edited = {**blocks[1].block, "item_count": 3}
    failure = first_failure([blocks[0], replace(blocks[1], block=edited), blocks[2]], stored, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq) == ("block_hash_mismatch", 2)
    assert (failure.expected, failure.found) == (blocks[1].block_hash, block_hash(edited))

    rehashed = replace(blocks[1], block=edited, block_hash=block_hash(edited))
    failure = first_failure([blocks[0], rehashed, blocks[2]], stored, refs)
    assert failure is not None and (failure.code, failure.block_seq) == ("signature_invalid", 2)

    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = replace(rehashed, signature=sign(edited, other_key))
    failure = first_failure([blocks[0], forged, blocks[2]], stored, refs)
    assert failure is not None and (failure.code, failure.block_seq) == ("signature_invalid", 2)

    unknown = replace(blocks[1], signature=replace(blocks[1].signature, key_id="arn:other"))
    failure = first_failure([blocks[0], unknown, blocks[2]], stored, refs)
    assert failure is not None and (failure.code, failure.found) == ("unknown_key", "arn:other")


def test_a_block_that_does_not_link_to_its_predecessor_is_named() -> None:
    blocks, stored, refs = chain()
    relinked = resign(blocks[2], previous_block_hash=blocks[0].block_hash)
    failure = first_failure([blocks[0], blocks[1], relinked], stored, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq) == ("previous_hash_mismatch", 3)
    assert (failure.expected, failure.found) == (blocks[1].block_hash, blocks[0].block_hash)

    other = resign(blocks[0], tenant_id="ten_2")
    failure = first_failure([other, *blocks[1:]], stored, refs)
    assert failure is not None and (failure.code, failure.block_seq) == ("block_format", 1)


def test_reordered_dropped_or_changed_leaves_are_named() -> None:
    blocks, stored, refs = chain()
    second = blocks[1]
    leaves = list(second.leaves)
    swapped = replace(second, leaves=(leaves[1], leaves[0], *leaves[2:]))
    failure = first_failure([blocks[0], swapped, blocks[2]], stored, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq, failure.item) == ("items_out_of_order", 2, leaves[0].ref.describe())

    dropped = replace(second, leaves=tuple(leaves[:-1]))
    failure = first_failure([blocks[0], dropped, blocks[2]], stored, refs)
    assert failure is not None and (failure.code, failure.expected, failure.found) == ("item_count_mismatch", "4", "3")

    changed = replace(second, leaves=(replace(leaves[0], item_hash="0" * 64), *leaves[1:]))
    failure = first_failure([blocks[0], changed, blocks[2]], stored, refs)
    assert failure is not None and (failure.code, failure.block_seq) == ("merkle_root_mismatch", 2)
    assert failure.expected == second.block["merkle_root"]

    bad_cursors = resign(second, last_item=leaves[-2].ref.cursor)
    failure = first_failure(
        [blocks[0], bad_cursors, resign(blocks[2], previous_block_hash=bad_cursors.block_hash)], stored, refs
    )
    assert failure is not None and (failure.code, failure.block_seq) == ("cursor_mismatch", 2)


def test_a_changed_item_is_named_with_the_sealed_and_the_found_hash() -> None:
    blocks, stored, refs = chain()
    target = blocks[1].leaves[2]
    original = stored[target.key]
    assert original is not None
    tampered = {**original, "leg_amount_minor": 999_999} if target.ref.kind == LEG else {**original, "actor": "x"}
    failure = first_failure(blocks, {**stored, target.key: tampered}, refs)
    assert failure == ChainFailure(
        "item_hash_mismatch",
        failure.detail if failure else "",
        2,
        target.ref.describe(),
        target.item_hash,
        item_hash(tampered),
    )


def test_a_deleted_item_is_named() -> None:
    blocks, stored, refs = chain()
    target = blocks[2].leaves[1]
    failure = first_failure(blocks, {**stored, target.key: None}, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq, failure.item, failure.found) == (
        "item_missing",
        3,
        target.ref.describe(),
        None,
    )
    # The first failure wins: a later deletion does not hide an earlier change.
    earlier = blocks[0].leaves[0]
    failure = first_failure(blocks, {**stored, target.key: None, earlier.key: {"changed": True}}, refs)
    assert failure is not None and (failure.code, failure.block_seq) == ("item_hash_mismatch", 1)


def test_an_item_sealed_twice_is_named() -> None:
    blocks, stored, refs = chain(2, 2)
    again = blocks[0].leaves[0]
    made = sorted([*blocks[1].leaves, again], key=lambda leaf: leaf.ref)
    block = build_block(
        tenant_id=TENANT,
        seq=2,
        previous_block_hash=blocks[0].block_hash,
        leaves=made,
        created_at=instant(1, 59),
    )
    failure = first_failure([blocks[0], SealedBlock(block, block_hash(block), sign(block), tuple(made))], stored, refs)
    assert failure is not None
    assert (failure.code, failure.block_seq, failure.expected, failure.found) == ("item_sealed_twice", 2, "1", "2")


def test_an_old_unsealed_item_is_named_and_a_recent_one_is_pending() -> None:
    blocks, _, refs = chain()
    created = str(blocks[-1].block["created_at"])
    inserted, _ = leg(900, instant(1, 30))  # recorded long before the last block (late window: 20 minutes)
    assert late_bound(created) == "2026-11-22T09:42:59.000000Z"
    sealed_in: dict[tuple[str, str, str], int] = {}
    for sealed in blocks:
        assert index_leaves(sealed, sealed_in) is None
    failure, pending = check_coverage(sealed_in, blocks[-1], [*refs, inserted])
    assert failure is None and pending == 1  # 10:01:30 is within the late window of a block created at 10:02:59

    old, _ = leg(901, "2026-11-22T09:00:00.000000Z")
    failure, _ = check_coverage(sealed_in, blocks[-1], [*refs, inserted, old])
    assert failure is not None
    assert (failure.code, failure.block_seq, failure.item) == ("item_unsealed", 3, old.describe())
    assert check_coverage({}, None, [old]) == (None, 1)  # nothing sealed yet: nothing to hold it against


def test_the_locked_copy_must_match_the_stored_block_byte_for_byte() -> None:
    blocks, _, _ = chain(1)
    copy = rfc8785.dumps(blocks[0].to_document())
    assert check_copy(blocks[0], copy) is None
    missing = check_copy(blocks[0], None)
    assert missing is not None and missing.code == "copy_missing"
    altered = check_copy(replace(blocks[0], leaves=blocks[0].leaves[::-1]), copy)
    assert altered is not None and (altered.code, altered.expected) == (
        "copy_mismatch",
        hashlib.sha256(copy).hexdigest(),
    )


def test_one_item_against_its_signed_block() -> None:
    blocks, stored, _ = chain()
    sealed = blocks[1]
    for leaf in sealed.leaves:
        item = stored[leaf.key]
        assert item is not None
        proof = sealed.proof(leaf.key)
        assert verify_item_proof(item, proof, sealed, PUBLIC_DER) is None
        failure = verify_item_proof({**item, "tenant_id": "ten_2"}, proof, sealed, PUBLIC_DER)
        assert failure is not None and failure.code == "proof_invalid"
        if proof.path:
            bent = replace(proof, path=(ProofStep(proof.path[0].side, "0" * 64), *proof.path[1:]))
            bad = verify_item_proof(item, bent, sealed, PUBLIC_DER)
            assert bad is not None and bad.code == "proof_invalid"
    leaf = sealed.leaves[0]
    item = stored[leaf.key]
    assert item is not None
    edited = replace(sealed, block={**sealed.block, "created_at": instant(9, 0)})
    failure = verify_item_proof(item, sealed.proof(leaf.key), edited, PUBLIC_DER)
    assert failure is not None and failure.code == "block_hash_mismatch"
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    failure = verify_item_proof(item, sealed.proof(leaf.key), sealed, other_der)
    assert failure is not None and failure.code == "signature_invalid"


def test_malformed_documents_are_refused() -> None:
    for bad in ({}, {"block": {}, "block_hash": "x"}, {"block": {}, "block_hash": "x", "signature": {}}):
        with pytest.raises(SealFormatError):
            SealedBlock.from_document(bad)
    blocks, _, _ = chain(1)
    document = blocks[0].to_document()
    document["items"][0]["kind"] = "header"
    with pytest.raises(SealFormatError):
        SealedBlock.from_document(document)
    assert not verify_signature(blocks[0].block, replace(blocks[0].signature, value_b64="%%%"), PUBLIC_DER)
    assert not verify_signature(blocks[0].block, replace(blocks[0].signature, algorithm="RSA"), PUBLIC_DER)
    assert not verify_signature(blocks[0].block, blocks[0].signature, b"not a key")


def test_a_stream_batch_names_the_tenants_whose_history_grew() -> None:
    def record(event: str, image: dict[str, Any] | None) -> dict[str, Any]:
        return {"eventName": event, "dynamodb": {} if image is None else {"NewImage": image}}

    records = [
        record("INSERT", {"tenant_id": {"S": "ten_b"}, "pk": {"S": "ten_b#txn_1"}}),
        record("INSERT", {"tenant_id": {"S": "ten_a"}}),
        record("INSERT", {"tenant_id": {"S": "ten_b"}}),
        record("INSERT", {"tenant_id": {"S": "_platform"}}),  # the platform partition is not a tenant
        record("MODIFY", {"tenant_id": {"S": "ten_c"}}),  # never happens on append-only tables; not new history
        record("INSERT", None),
        record("INSERT", {"pk": {"S": "no tenant"}}),
    ]
    assert stream_tenants(records) == ["ten_a", "ten_b"]
