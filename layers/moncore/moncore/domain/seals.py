"""Seals (DESIGN.md invariant 12): per-tenant, hash-chained, KMS-signed blocks over the hashes of ledger legs and audit
events, and the checks that find the FIRST place where stored history and its seals disagree. Pure: no I/O, no AWS
(hashlib, RFC 8785 and `cryptography` only), so the offline bundle verifier imports exactly these functions.

Formats (docs/audit.md is the reference for outside verifiers):

    item       the stored DynamoDB item as plain JSON (`plain_item`): S -> string, N -> integer, BOOL, NULL, M, L;
               sealed items hold no binary, no fractional number and no integer beyond 2^53 - 1 (refused, never
               approximated)
    item hash  SHA-256 of the item's RFC 8785 canonical JSON (`item_hash`), hex
    leaf       {kind: "leg" | "audit", pk, sk, cursor, item_hash}: which item (table by kind, key pk/sk), where it
               sorts (cursor: a leg's entry_sk, an audit event's sk; both "<recorded_at>#<id>...") and its hash
    block      {format, tenant_id, seq, previous_block_hash, merkle_root, item_count, first_item, last_item,
               created_at}; seq counts from 1; block 1 links to GENESIS_HASH; merkle_root over the leaves' item hashes
               in leaf order (domain.merkle); first_item / last_item are the first and last leaf's cursors
    block hash SHA-256 of the block's RFC 8785 canonical JSON, hex; the next block's previous_block_hash
    signature  KMS ECDSA_SHA_256 (P-256) over the block's canonical JSON bytes, i.e. over the block hash: ECDSA with
               SHA-256 signs SHA-256(message), which is exactly the block hash. DER, base64.

Leaves are sorted by (cursor, kind, pk, sk). Blocks of one tenant may overlap in cursor range: an item that committed
after a later-stamped item was already sealed (it stamped recorded_at, then took longer to commit) is sealed by the
next block, whose first_item is then below the previous block's last_item (moncore/audit/sealing.py, "late items").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from moncore.domain.audit import PLATFORM_TENANT
from moncore.domain.canonical import canonical_bytes, sha256_hex
from moncore.domain.clock import rfc3339
from moncore.domain.merkle import InclusionProof, MerkleError, inclusion_proof, merkle_root, verify_inclusion

FORMAT = "moncore-seal/1"  # the block's own format tag (inside the hashed, signed block)
DOCUMENT_FORMAT = "moncore-sealed-block/1"  # the stored/copied document: block + hash + signature + leaves
GENESIS_HASH = "0" * 64  # block 1's previous_block_hash
SIGNATURE_ALGORITHM = "ECDSA_SHA_256"
LEG = "leg"
AUDIT = "audit"
KINDS = (LEG, AUDIT)
# At most this many items per block: a block's leaves are stored in one DynamoDB item (400 KB limit; a leaf is ~300
# bytes of JSON), and one KMS signature per 500 items costs nothing next to the items' own writes.
MAX_BLOCK_ITEMS = 500
# How long after its recorded_at an item may still become visible: the longest a writer can hold a stamped item
# before its write commits (JobsFunction's 900 s timeout bounds every writer: a Lambda cannot outlive it), plus the
# ledger index's propagation and clock skew between writers and the sealer. Every sealing run looks this far back
# behind the previous run; an item that appears later still is reported by the chain check as unsealed.
LATE_WINDOW_S = 1200
_MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers would not round-trip


class SealFormatError(ValueError):
    """Input that is not a well-formed seal, leaf, proof or sealable item (a verifier reports it, never crashes)."""


# ---------------------------------------------------------------- items
def _plain(value: Mapping[str, Any], where: str) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise SealFormatError(f"{where}: not a DynamoDB attribute value")
    ((tag, inner),) = value.items()
    if tag == "S":
        return str(inner)
    if tag == "N":
        return _integer(str(inner), where)
    if tag == "BOOL":
        return bool(inner)
    if tag == "NULL":
        return None
    if tag == "M":
        return {str(name): _plain(member, f"{where}.{name}") for name, member in inner.items()}
    if tag == "L":
        return [_plain(member, f"{where}[{index}]") for index, member in enumerate(inner)]
    if tag == "SS":
        return sorted(str(member) for member in inner)
    if tag == "NS":
        return sorted(_integer(str(member), where) for member in inner)
    raise SealFormatError(f"{where}: attribute type {tag} cannot be sealed (binary)")


def _integer(text: str, where: str) -> int:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise SealFormatError(f"{where}: {text!r} is not a number") from None
    if number != number.to_integral_value() or abs(number) > _MAX_SAFE_INTEGER:
        raise SealFormatError(f"{where}: {text} is not an integer within 2^53 - 1: sealed items hold integers only")
    return int(number)


def plain_item(typed: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item in DynamoDB's typed wire format ({"amount": {"N": "5"}}) as the plain JSON that is hashed."""
    return {str(name): _plain(value, str(name)) for name, value in typed.items()}


def item_hash(item: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the item's RFC 8785 canonical JSON: the leaf data of the block that seals it."""
    return sha256_hex(dict(item))


def item_cursor(kind: str, item: Mapping[str, Any]) -> str:
    """Where the item sorts in its tenant's sealing order: a leg's entry_sk, an audit event's sk."""
    if kind == LEG:
        return str(item.get("entry_sk") or "")
    if kind == AUDIT:
        return str(item.get("sk") or "")
    raise SealFormatError(f"unknown item kind {kind!r}")


def cursor_instant(cursor: str) -> str:
    """The recorded_at a cursor starts with."""
    return cursor.split("#", 1)[0]


def late_bound(created_at: str) -> str:
    """The recorded_at at or before which every item must have been visible to a sealing run that started at
    `created_at` (LATE_WINDOW_S earlier)."""
    moment = datetime.fromisoformat(created_at.replace("Z", "+00:00")) - timedelta(seconds=LATE_WINDOW_S)
    return rfc3339(moment)


def stream_tenants(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The tenants whose sealable history grew in a DynamoDB stream batch (Ledger and Audit tables, NEW_IMAGE): the
    `tenant_id` of every inserted item. The platform partition is not a tenant (not sealed yet: docs/audit.md)."""
    tenants = set()
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        tenant = (image.get("tenant_id") or {}).get("S")
        if record.get("eventName") == "INSERT" and tenant and tenant != PLATFORM_TENANT:
            tenants.add(str(tenant))
    return sorted(tenants)


@dataclass(frozen=True, slots=True, order=True)
class ItemRef:
    """A sealable item: sorted by (cursor, kind, pk, sk), the order of leaves in blocks."""

    cursor: str
    kind: str
    pk: str
    sk: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.pk, self.sk)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "pk": self.pk, "sk": self.sk, "cursor": self.cursor}


@dataclass(frozen=True, slots=True)
class Leaf:
    ref: ItemRef
    item_hash: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.ref.key

    def to_json(self) -> dict[str, str]:
        return {**self.ref.describe(), "item_hash": self.item_hash}

    @classmethod
    def from_json(cls, data: Any) -> Leaf:
        # Runs once per sealed item in every chain check and bundle verification: one lookup per field, positional
        # construction.
        try:
            cursor, kind, pk, sk, digest = data["cursor"], data["kind"], data["pk"], data["sk"], data["item_hash"]
        except (KeyError, TypeError) as exc:
            raise SealFormatError(f"malformed leaf: {exc}") from None
        if kind not in KINDS:
            raise SealFormatError(f"malformed leaf: unknown kind {kind!r}")
        return cls(ItemRef(str(cursor), str(kind), str(pk), str(sk)), str(digest))


def leaf_of(ref: ItemRef, item: Mapping[str, Any]) -> Leaf:
    return Leaf(ref, item_hash(item))


# ---------------------------------------------------------------- blocks
def build_block(
    *, tenant_id: str, seq: int, previous_block_hash: str, leaves: Sequence[Leaf], created_at: str
) -> dict[str, Any]:
    """The block that seals `leaves` (sorted, 1..MAX_BLOCK_ITEMS) after the block whose hash is previous_block_hash."""
    if not 0 < len(leaves) <= MAX_BLOCK_ITEMS:
        raise SealFormatError(f"a block seals 1 to {MAX_BLOCK_ITEMS} items, not {len(leaves)}")
    refs = [leaf.ref for leaf in leaves]
    if any(a >= b for a, b in pairwise(refs)):
        raise SealFormatError("a block's leaves must be sorted by (cursor, kind, pk, sk) without repeats")
    if seq < 1:
        raise SealFormatError(f"block numbers start at 1, not {seq}")
    return {
        "format": FORMAT,
        "tenant_id": tenant_id,
        "seq": seq,
        "previous_block_hash": previous_block_hash,
        "merkle_root": merkle_root([leaf.item_hash for leaf in leaves]),
        "item_count": len(leaves),
        "first_item": refs[0].cursor,
        "last_item": refs[-1].cursor,
        "created_at": created_at,
    }


def block_hash(block: Mapping[str, Any]) -> str:
    return sha256_hex(dict(block))


def signed_bytes(block: Mapping[str, Any]) -> bytes:
    """What KMS signs: the block's canonical JSON (its SHA-256 is the block hash)."""
    return canonical_bytes(dict(block))


@dataclass(frozen=True, slots=True)
class BlockSignature:
    key_id: str
    algorithm: str
    value_b64: str

    def to_json(self) -> dict[str, str]:
        return {"key_id": self.key_id, "algorithm": self.algorithm, "value_b64": self.value_b64}


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """A block as stored (Seals table) and copied (evidence bucket): the block, its hash, its signature, its leaves."""

    block: dict[str, Any]
    block_hash: str
    signature: BlockSignature
    leaves: tuple[Leaf, ...] = field(default=())

    @property
    def seq(self) -> int:
        return int(self.block.get("seq", 0))

    def to_document(self) -> dict[str, Any]:
        """The JSON copied to seals/<tenant>/<seq>.json and returned by proofs (without `items` there)."""
        return {
            "format": DOCUMENT_FORMAT,
            "block": self.block,
            "block_hash": self.block_hash,
            "signature": self.signature.to_json(),
            "items": [leaf.to_json() for leaf in self.leaves],
        }

    @classmethod
    def from_document(cls, data: Any) -> SealedBlock:
        """Parse an untrusted sealed-block document; malformed input is a SealFormatError."""
        try:
            block = dict(data["block"])
            signature = BlockSignature(
                key_id=str(data["signature"]["key_id"]),
                algorithm=str(data["signature"]["algorithm"]),
                value_b64=str(data["signature"]["value_b64"]),
            )
            leaves = tuple(Leaf.from_json(leaf) for leaf in data.get("items") or [])
            return cls(block=block, block_hash=str(data["block_hash"]), signature=signature, leaves=leaves)
        except (KeyError, TypeError, ValueError) as exc:
            raise SealFormatError(f"malformed sealed block: {exc}") from None

    def position(self, key: tuple[str, str, str]) -> int | None:
        """The leaf index of the item with this (kind, pk, sk), or None when the block does not seal it."""
        return next((index for index, leaf in enumerate(self.leaves) if leaf.key == key), None)

    def proof(self, key: tuple[str, str, str]) -> InclusionProof:
        index = self.position(key)
        if index is None:
            raise SealFormatError(f"block {self.seq} does not seal {key}")
        return inclusion_proof([leaf.item_hash for leaf in self.leaves], index)


def verify_signature(block: Mapping[str, Any], signature: BlockSignature, public_key_der: bytes) -> bool:
    """True when `signature` is a valid ECDSA P-256 / SHA-256 signature of the block's canonical JSON."""
    if signature.algorithm != SIGNATURE_ALGORITHM:
        return False
    try:
        key = load_der_public_key(public_key_der)
        raw = base64.b64decode(signature.value_b64, validate=True)
    except (ValueError, TypeError, binascii.Error):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    try:
        key.verify(raw, signed_bytes(block), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------- verification
@dataclass(frozen=True, slots=True)
class ChainFailure:
    """The first place where stored history and its seals disagree: what (code), where (block, item), and the values
    that differ (expected = what the seal says, found = what is stored now)."""

    code: str
    detail: str
    block_seq: int | None = None
    item: dict[str, str] | None = None
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detail": self.detail,
            "block_seq": self.block_seq,
            "item": self.item,
            "expected": self.expected,
            "found": self.found,
        }


PublicKeys = Callable[[str], bytes | None]  # key id -> the public key's DER (SubjectPublicKeyInfo), None if unknown


def check_block(
    sealed: SealedBlock, previous: SealedBlock | None, *, tenant_id: str, public_key: PublicKeys
) -> ChainFailure | None:
    """Everything about one block that needs no stored item: its place in the chain, its hash and signature, and
    that its leaves are the ones its merkle_root, item_count and cursors commit to."""
    if previous is None:
        return _check_block_after(sealed, 0, GENESIS_HASH, tenant_id=tenant_id, public_key=public_key)
    return _check_block_after(
        sealed, previous.seq, block_hash(previous.block), tenant_id=tenant_id, public_key=public_key
    )


def check_segment_start(
    sealed: SealedBlock, first_seq: int, previous_block_hash: str, *, tenant_id: str, public_key: PublicKeys
) -> ChainFailure | None:
    """check_block for the first block of a chain segment whose predecessor is not at hand (an evidence bundle
    carries blocks first_seq..n, not 1..n): the same checks, the block must be `first_seq` and link to
    `previous_block_hash` (block first_seq - 1's hash, as the bundle's signed manifest states it; block 1 always links
    to GENESIS_HASH)."""
    link = GENESIS_HASH if first_seq == 1 else previous_block_hash
    return _check_block_after(sealed, first_seq - 1, link, tenant_id=tenant_id, public_key=public_key)


def _check_block_after(
    sealed: SealedBlock, previous_seq: int, link: str, *, tenant_id: str, public_key: PublicKeys
) -> ChainFailure | None:
    """The checks of check_block, the predecessor given by its seq (0: none) and block hash."""
    block, seq = sealed.block, sealed.seq
    if block.get("format") != FORMAT or block.get("tenant_id") != tenant_id:
        found = f"{block.get('format')} of {block.get('tenant_id')}"
        return ChainFailure(
            "block_format", f"block {seq} is not a {FORMAT} block of {tenant_id}", seq, None, FORMAT, found
        )
    wanted_seq = previous_seq + 1
    if seq != wanted_seq:
        return ChainFailure(
            "sequence_gap",
            f"block {wanted_seq} is missing: the chain continues with block {seq}",
            seq,
            None,
            str(wanted_seq),
            str(seq),
        )
    recomputed = block_hash(block)
    if recomputed != sealed.block_hash:
        return ChainFailure(
            "block_hash_mismatch",
            f"block {seq}'s content no longer hashes to its recorded block hash (the block was altered)",
            seq,
            None,
            sealed.block_hash,
            recomputed,
        )
    key = public_key(sealed.signature.key_id)
    if key is None:
        return ChainFailure(
            "unknown_key", f"block {seq} is signed by an unknown key", seq, None, None, sealed.signature.key_id
        )
    if not verify_signature(block, sealed.signature, key):
        return ChainFailure(
            "signature_invalid",
            f"block {seq}'s signature does not verify with key {sealed.signature.key_id}",
            seq,
        )
    if block.get("previous_block_hash") != link:
        return ChainFailure(
            "previous_hash_mismatch",
            f"block {seq} does not link to block {seq - 1}",
            seq,
            None,
            link,
            str(block.get("previous_block_hash")),
        )
    return check_leaves(sealed)


def check_leaves(sealed: SealedBlock) -> ChainFailure | None:
    """The stored leaves are the ones the (signed) block commits to: count, order, cursors and Merkle root."""
    block, seq, leaves = sealed.block, sealed.seq, sealed.leaves
    if block.get("item_count") != len(leaves):
        return ChainFailure(
            "item_count_mismatch",
            f"block {seq} seals {block.get('item_count')} items but lists {len(leaves)}",
            seq,
            None,
            str(block.get("item_count")),
            str(len(leaves)),
        )
    for index in range(1, len(leaves)):
        if leaves[index - 1].ref >= leaves[index].ref:
            return ChainFailure(
                "items_out_of_order",
                f"block {seq}: item {index} sorts before (or equals) item {index - 1}: the items were reordered",
                seq,
                leaves[index].ref.describe(),
                leaves[index - 1].ref.cursor,
                leaves[index].ref.cursor,
            )
    ends = (leaves[0].ref.cursor, leaves[-1].ref.cursor) if leaves else ("", "")
    if (block.get("first_item"), block.get("last_item")) != ends:
        return ChainFailure(
            "cursor_mismatch",
            f"block {seq}'s first/last item cursors are not its first/last items'",
            seq,
            None,
            f"{block.get('first_item')}..{block.get('last_item')}",
            f"{ends[0]}..{ends[1]}",
        )
    try:
        root = merkle_root([leaf.item_hash for leaf in leaves])
    except MerkleError as exc:
        return ChainFailure("merkle_root_mismatch", f"block {seq}: {exc}", seq, None, str(block.get("merkle_root")))
    if root != block.get("merkle_root"):
        return ChainFailure(
            "merkle_root_mismatch",
            f"block {seq}'s items do not hash to its signed merkle_root (an item hash was changed)",
            seq,
            None,
            str(block.get("merkle_root")),
            root,
        )
    return None


def check_items(
    sealed: SealedBlock, stored: Mapping[tuple[str, str, str], Mapping[str, Any] | None]
) -> ChainFailure | None:
    """Every item the block seals is still stored, unchanged. `stored` maps (kind, pk, sk) to the item read now (plain
    JSON, `plain_item`) or None when it is gone."""
    for index, leaf in enumerate(sealed.leaves):
        item = stored.get(leaf.key)
        what = f"{'leg' if leaf.ref.kind == LEG else 'audit event'} {leaf.ref.pk} / {leaf.ref.sk}"
        if item is None:
            return ChainFailure(
                "item_missing",
                f"block {sealed.seq} item {index}: the {what} is no longer stored (deleted)",
                sealed.seq,
                leaf.ref.describe(),
                leaf.item_hash,
                None,
            )
        try:
            found = item_hash(item)
        except (SealFormatError, ValueError) as exc:
            found = f"unhashable: {exc}"
        if found != leaf.item_hash:
            return ChainFailure(
                "item_hash_mismatch",
                f"block {sealed.seq} item {index}: the {what} was changed after it was sealed",
                sealed.seq,
                leaf.ref.describe(),
                leaf.item_hash,
                found,
            )
    return None


def index_leaves(sealed: SealedBlock, sealed_in: dict[tuple[str, str, str], int]) -> ChainFailure | None:
    """Add the block's items to `sealed_in` ((kind, pk, sk) -> block seq); an item some earlier block sealed too is a
    failure (a block was replayed or its items copied into another)."""
    seq = sealed.seq
    for leaf in sealed.leaves:
        key = leaf.key
        earlier = sealed_in.get(key)
        if earlier is not None:
            return ChainFailure(
                "item_sealed_twice",
                f"block {seq} seals an item block {earlier} already sealed",
                seq,
                leaf.ref.describe(),
                str(earlier),
                str(seq),
            )
        sealed_in[key] = seq
    return None


def check_coverage(
    sealed_in: Mapping[tuple[str, str, str], int], last: SealedBlock | None, present: Iterable[ItemRef]
) -> tuple[ChainFailure | None, int]:
    """Every stored item old enough to have been seen by the last sealing run (recorded at least LATE_WINDOW_S before
    the last block was created) is sealed. `sealed_in` comes from index_leaves over the whole chain, `present` lists
    the stored items. Returns (the first failure, how many unsealed items are still pending: too recent to judge)."""
    bound = late_bound(str(last.block.get("created_at"))) if last is not None else None
    pending = 0
    for ref in sorted(present):
        if ref.key in sealed_in:
            continue
        if last is None or bound is None or cursor_instant(ref.cursor) > bound:
            pending += 1
            continue
        return (
            ChainFailure(
                "item_unsealed",
                f"the {ref.kind} {ref.pk} / {ref.sk} recorded at {cursor_instant(ref.cursor)} is in no block, though "
                f"block {last.seq} sealed everything recorded by {bound}",
                last.seq,
                ref.describe(),
                None,
                ref.cursor,
            ),
            pending,
        )
    return None, pending


def check_copy(sealed: SealedBlock, copy: bytes | None) -> ChainFailure | None:
    """The locked copy in the evidence bucket is byte for byte the block as stored (canonical JSON of its document):
    a Seals table row rewritten after the fact cannot also rewrite a COMPLIANCE-locked object."""
    expected = canonical_bytes(sealed.to_document())
    if copy is None:
        return ChainFailure("copy_missing", f"block {sealed.seq} has no copy in the evidence bucket", sealed.seq)
    if copy != expected:
        return ChainFailure(
            "copy_mismatch",
            f"block {sealed.seq} differs from its locked copy in the evidence bucket",
            sealed.seq,
            None,
            hashlib.sha256(copy).hexdigest(),
            hashlib.sha256(expected).hexdigest(),
        )
    return None


def verify_item_proof(
    item: Mapping[str, Any],
    proof: InclusionProof,
    sealed: SealedBlock,
    public_key_der: bytes,
) -> ChainFailure | None:
    """One item against one signed block, as a partner or regulator checks a proof: the item hashes to a leaf that
    the proof folds into the block's merkle_root, the block hashes to its block hash, and the signature holds."""
    seq = sealed.seq
    try:
        digest = item_hash(item)
    except (SealFormatError, ValueError) as exc:
        return ChainFailure("item_hash_mismatch", f"the item cannot be hashed: {exc}", seq)
    size = sealed.block.get("item_count")
    if not isinstance(size, int) or not verify_inclusion(digest, proof, str(sealed.block.get("merkle_root")), size):
        return ChainFailure(
            "proof_invalid",
            f"the item's hash is not leaf {proof.leaf_index} of block {seq}'s Merkle tree",
            seq,
            None,
            str(sealed.block.get("merkle_root")),
            digest,
        )
    recomputed = block_hash(sealed.block)
    if recomputed != sealed.block_hash:
        return ChainFailure("block_hash_mismatch", f"block {seq} was altered", seq, None, sealed.block_hash, recomputed)
    if not verify_signature(sealed.block, sealed.signature, public_key_der):
        return ChainFailure("signature_invalid", f"block {seq}'s signature does not verify", seq)
    return None
