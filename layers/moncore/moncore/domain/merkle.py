"""Merkle trees over item hashes, RFC 6962 / RFC 9162 style: roots, inclusion proofs and their verification.

Pure (hashlib only): the sealer, the proof endpoint, the chain-integrity job and the offline bundle verifier share it.

Hashing (RFC 6962 section 2.1, "MTH"):
    leaf hash  = SHA-256(0x00 || leaf data)        leaf data = the item's 32-byte SHA-256 (domain.seals.item_hash)
    node hash  = SHA-256(0x01 || left || right)
    root of n leaves, n > 1: split at k, the largest power of two below n; no leaf is ever duplicated.

Why the 0x00 / 0x01 prefixes (domain separation): without them an interior node (the hash of 64 bytes) is also a valid
leaf hash, so the tree over leaves [a, b, c, d] has the same root as the tree over the two "leaves" [H(a|b), H(c|d)],
and a proof could present an interior node as if it were a sealed item (a second preimage). With a different first
byte for leaves and nodes the two preimage sets never meet. Splitting at a power of two instead of duplicating the
last odd node avoids the other classic flaw (Bitcoin's CVE-2012-2459: [a, b, c] and [a, b, c, c] share a root).

An inclusion proof is the audit path of RFC 6962 section 2.1.1 (siblings from the leaf up to the root). Each step also
says on which side the sibling sits, so a person can fold it by hand (sha256sum, docs/audit.md); `verify_inclusion`
does not trust those sides: it recomputes them from (leaf_index, tree_size) as RFC 9162 section 2.1.3.2 does and
refuses a proof whose sides disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_BYTES = 32

Side = Literal["left", "right"]


class MerkleError(ValueError):
    """A tree or proof that is not well formed (empty tree, index out of range, a hash that is not 32 bytes)."""


@dataclass(frozen=True, slots=True)
class ProofStep:
    side: Side  # where the sibling sits: "left" -> parent = H(0x01 | sibling | acc), "right" -> H(0x01 | acc | sibling)
    hash: str  # hex

    def to_json(self) -> dict[str, str]:
        return {"side": self.side, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int  # 0-based position of the item in its block
    tree_size: int  # the block's item_count
    path: tuple[ProofStep, ...]  # leaf to root

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "path": [step.to_json() for step in self.path],
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        """Parse an untrusted proof; anything malformed is a MerkleError (never a crash)."""
        try:
            path = tuple(ProofStep(side=step["side"], hash=str(step["hash"])) for step in data["path"])
            proof = cls(leaf_index=int(data["leaf_index"]), tree_size=int(data["tree_size"]), path=path)
        except (KeyError, TypeError, ValueError) as exc:
            raise MerkleError(f"malformed inclusion proof: {exc}") from None
        if any(step.side not in ("left", "right") for step in proof.path):
            raise MerkleError("malformed inclusion proof: a step's side is neither 'left' nor 'right'")
        return proof


def _raw(hex_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_hash)
    except (ValueError, TypeError):
        raise MerkleError(f"not a hex SHA-256: {hex_hash!r}") from None
    if len(raw) != HASH_BYTES:
        raise MerkleError(f"not a 32-byte SHA-256: {hex_hash!r}")
    return raw


def leaf_hash(item_hash: str) -> str:
    """The tree's leaf for one item: SHA-256(0x00 || the item hash's 32 bytes)."""
    return hashlib.sha256(LEAF_PREFIX + _raw(item_hash)).hexdigest()


def node_hash(left: str, right: str) -> str:
    return hashlib.sha256(NODE_PREFIX + _raw(left) + _raw(right)).hexdigest()


def _split(size: int) -> int:
    """k: the largest power of two strictly below size (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def _root_of_leaves(leaves: Sequence[str]) -> str:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(_root_of_leaves(leaves[:k]), _root_of_leaves(leaves[k:]))


def merkle_root(item_hashes: Sequence[str]) -> str:
    """The root over the items in order. A block always seals at least one item, so an empty tree is an error.

    Computed level by level on raw bytes (the chain check and the offline verifier recompute every block's root): at
    each level adjacent nodes are paired left to right and a last node without a partner moves up unchanged. That is
    the same tree as the recursive split at the largest power of two below n (RFC 6962 MTH): the left subtree of size
    k = 2^m is complete, so its pairs never cross the split, and only the right edge can hold an unpaired node."""
    if not item_hashes:
        raise MerkleError("a Merkle tree needs at least one item")
    sha256 = hashlib.sha256
    level = [sha256(LEAF_PREFIX + _raw(h)).digest() for h in item_hashes]
    while len(level) > 1:
        paired = [sha256(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def _path(leaves: Sequence[str], index: int) -> list[ProofStep]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(leaves[:k], index), ProofStep("right", _root_of_leaves(leaves[k:]))]
    return [*_path(leaves[k:], index - k), ProofStep("left", _root_of_leaves(leaves[:k]))]


def inclusion_proof(item_hashes: Sequence[str], index: int) -> InclusionProof:
    """The audit path of item `index` (RFC 6962 PATH(m, D[n])), leaf to root."""
    if not 0 <= index < len(item_hashes):
        raise MerkleError(f"leaf index {index} outside a tree of {len(item_hashes)} items")
    leaves = [leaf_hash(h) for h in item_hashes]
    return InclusionProof(leaf_index=index, tree_size=len(leaves), path=tuple(_path(leaves, index)))


def expected_sides(leaf_index: int, tree_size: int) -> list[Side]:
    """The side of each sibling on the path of leaf `leaf_index` in a tree of `tree_size` leaves (RFC 9162 2.1.3.2
    index arithmetic); its length is the path length a valid proof must have."""
    if not 0 <= leaf_index < tree_size:
        raise MerkleError(f"leaf index {leaf_index} outside a tree of {tree_size} items")
    sides: list[Side] = []
    fn, sn = leaf_index, tree_size - 1
    while sn > 0:
        if fn & 1 or fn == sn:
            sides.append("left")
            if not fn & 1:  # a right-edge node with no right sibling at this level: climb until it has one
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sides.append("right")
        fn >>= 1
        sn >>= 1
    return sides


def root_from_proof(item_hash: str, proof: InclusionProof) -> str:
    """Fold the proof from the item's leaf up; the result must equal the block's merkle_root. Raises MerkleError when
    the proof's shape does not fit (leaf_index, tree_size): wrong length or a side that is not where it must be."""
    sides = expected_sides(proof.leaf_index, proof.tree_size)
    if len(sides) != len(proof.path):
        raise MerkleError(
            f"a proof for leaf {proof.leaf_index} of {proof.tree_size} has {len(sides)} steps, not {len(proof.path)}"
        )
    acc = leaf_hash(item_hash)
    for number, (side, step) in enumerate(zip(sides, proof.path, strict=True)):
        if step.side != side:
            raise MerkleError(f"proof step {number}: the sibling is on the {side}, the proof says {step.side}")
        acc = node_hash(step.hash, acc) if side == "left" else node_hash(acc, step.hash)
    return acc


def verify_inclusion(item_hash: str, proof: InclusionProof, root: str, tree_size: int) -> bool:
    """True when the item with this hash is leaf `proof.leaf_index` of the tree of `tree_size` items whose root is
    `root`. Root and size come from the signed block (merkle_root, item_count), never from the proof: a proof's own
    tree_size is only checked against them."""
    if proof.tree_size != tree_size:
        return False
    try:
        return root_from_proof(item_hash, proof) == root.lower()
    except MerkleError:
        return False
