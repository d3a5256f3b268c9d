"""Merkle trees (moncore.domain.merkle): RFC 6962 roots, an inclusion proof for every leaf of every tree of 1..17
items, and the ways a proof can be tampered with, each refused."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from moncore.domain.merkle import (
    InclusionProof,
    MerkleError,
    ProofStep,
    expected_sides,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_proof,
    verify_inclusion,
)


def items(n: int) -> list[str]:
    return [hashlib.sha256(f"item {i}".encode()).hexdigest() for i in range(n)]


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def reference_root(hashes: list[str]) -> str:
    """RFC 6962 MTH written out independently with plain hashlib (split at the largest power of two below n)."""

    def mth(leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return h(b"\x00" + leaves[0])
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))

    return mth([bytes.fromhex(x) for x in hashes]).hex()


def fold_by_sides(item_hash: str, proof: InclusionProof) -> str:
    """What a person does by hand (docs/audit.md): follow the sides, nothing else."""
    acc = h(b"\x00" + bytes.fromhex(item_hash))
    for step in proof.path:
        sibling = bytes.fromhex(step.hash)
        acc = h(b"\x01" + sibling + acc) if step.side == "left" else h(b"\x01" + acc + sibling)
    return acc.hex()


@pytest.mark.parametrize("size", range(1, 18))
def test_every_leaf_of_trees_of_1_to_17_items_has_a_proof_that_verifies(size: int) -> None:
    hashes = items(size)
    root = merkle_root(hashes)
    assert root == reference_root(hashes)
    for index, item in enumerate(hashes):
        proof = inclusion_proof(hashes, index)
        assert (proof.leaf_index, proof.tree_size) == (index, size)
        assert [step.side for step in proof.path] == expected_sides(index, size)
        assert verify_inclusion(item, proof, root, size)
        assert fold_by_sides(item, proof) == root  # the sides alone are enough for a manual check
        assert InclusionProof.from_json(proof.to_json()) == proof
        others = [x for x in hashes if x != item] + [hashlib.sha256(b"not sealed").hexdigest()]
        assert not any(verify_inclusion(other, proof, root, size) for other in others)


def test_a_three_item_tree_by_hand() -> None:
    a, b, c = items(3)
    expected = node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert merkle_root([a, b, c]) == expected
    proof = inclusion_proof([a, b, c], 2)
    assert proof.path == (ProofStep("left", node_hash(leaf_hash(a), leaf_hash(b))),)
    assert merkle_root([a]) == leaf_hash(a) == hashlib.sha256(b"\x00" + bytes.fromhex(a)).hexdigest()


def tampered_proofs(proof: InclusionProof) -> dict[str, InclusionProof]:
    first = proof.path[0]
    flipped = f"{int(first.hash[0], 16) ^ 1:x}{first.hash[1:]}"
    other_side = "left" if first.side == "right" else "right"
    return {
        "sibling byte flipped": replace(proof, path=(ProofStep(first.side, flipped), *proof.path[1:])),
        "sibling on the other side": replace(proof, path=(ProofStep(other_side, first.hash), *proof.path[1:])),
        "step dropped": replace(proof, path=proof.path[1:]),
        "step added": replace(proof, path=(*proof.path, first)),
        "steps swapped": replace(proof, path=tuple(reversed(proof.path))),
        "another index": replace(proof, leaf_index=(proof.leaf_index + 1) % proof.tree_size),
        "another tree size": replace(proof, tree_size=proof.tree_size + 1),
        "index outside the tree": replace(proof, leaf_index=proof.tree_size),
    }


@pytest.mark.parametrize("size", [5, 8, 13, 17])
def test_a_tampered_proof_fails(size: int) -> None:
    hashes = items(size)
    root = merkle_root(hashes)
    for index in range(size):
        proof = inclusion_proof(hashes, index)
        for name, bad in tampered_proofs(proof).items():
            if bad == proof:
                continue  # e.g. reversing a one-step path changes nothing
            assert not verify_inclusion(hashes[index], bad, root, size), (name, index)
        assert not verify_inclusion(hashes[index], proof, merkle_root(hashes[:-1] + items(size + 1)[-1:]), size)


def naive_root(leaves: list[bytes]) -> bytes:
    """A tree without domain separation: the item hashes are the leaves, a node is SHA-256(left | right)."""
    while len(leaves) > 1:
        leaves = [h(leaves[i] + leaves[i + 1]) if i + 1 < len(leaves) else leaves[i] for i in range(0, len(leaves), 2)]
    return leaves[0]


def test_an_interior_node_cannot_pass_for_an_item() -> None:
    """Second preimage: without the 0x00/0x01 prefixes, the tree over the two interior nodes [H(a|b), H(c|d)] has the
    root of [a, b, c, d], so a proof could present an interior node as a sealed item."""
    a, b, c, d = (bytes.fromhex(x) for x in items(4))
    assert naive_root([a, b, c, d]) == naive_root([h(a + b), h(c + d)])  # the forgery the prefixes exist to prevent
    n01 = node_hash(leaf_hash(a.hex()), leaf_hash(b.hex()))
    n23 = node_hash(leaf_hash(c.hex()), leaf_hash(d.hex()))
    assert merkle_root([n01, n23]) != merkle_root([x.hex() for x in (a, b, c, d)])
    root = merkle_root([x.hex() for x in (a, b, c, d)])
    as_item = InclusionProof(leaf_index=0, tree_size=2, path=(ProofStep("right", n23),))
    assert not verify_inclusion(n01, as_item, root, 2)
    assert not verify_inclusion(n01, as_item, root, 4)


def test_an_odd_last_item_is_never_duplicated() -> None:
    a, b, c = items(3)
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_malformed_input_is_refused_not_crashed_on() -> None:
    with pytest.raises(MerkleError):
        merkle_root([])
    with pytest.raises(MerkleError):
        merkle_root(["zz"])
    with pytest.raises(MerkleError):
        inclusion_proof(items(3), 3)
    for bad in ({}, {"leaf_index": 0, "tree_size": 1}, {"leaf_index": "x", "tree_size": 1, "path": []}):
        with pytest.raises(MerkleError):
            InclusionProof.from_json(bad)
    with pytest.raises(MerkleError):
        InclusionProof.from_json({"leaf_index": 0, "tree_size": 2, "path": [{"side": "up", "hash": "00"}]})
    proof = inclusion_proof(items(4), 1)
    short = replace(proof, path=(ProofStep("left", "abcd"), *proof.path[1:]))
    assert not verify_inclusion(items(4)[1], short, merkle_root(items(4)), 4)
    with pytest.raises(MerkleError):
        root_from_proof(items(4)[1], short)
