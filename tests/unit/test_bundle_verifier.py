"""The offline bundle verifier (moncore/audit/verifier.py) on small hand-built bundles: real P-256 signatures made
with a local key (as KMS makes them), blocks built with the sealing core, ZIPs written by the bundle writer and then
tampered with byte by byte. Each check must hold on the genuine bundle and name the FIRST failure precisely (file,
row, block, item) on a tampered one; `moncore verify` exits 0 / 1 accordingly."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moncore.audit.bundle import BundleWriter
from moncore.audit.verifier import verify_bundle
from moncore.cli import main
from moncore.domain.bundles import (
    AUDIT_EVENTS,
    COMPLIANCE_TIMELINE,
    EXPOSURE,
    LEDGER,
    ExposureTally,
    build_manifest,
    is_compliance_action,
    manifest_bytes,
)
from moncore.domain.canonical import canonical_bytes
from moncore.domain.seals import (
    AUDIT,
    GENESIS_HASH,
    LEG,
    BlockSignature,
    ItemRef,
    SealedBlock,
    block_hash,
    build_block,
    leaf_of,
    signed_bytes,
)

TENANT = "ten_1"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
KEY_ID = "arn:aws:kms:eu-west-1:123456789012:key/test"
SCOPE = ("2026-11-22T10:00:00.000000Z", "2026-11-22T11:00:00.000000Z")
Item = dict[str, Any]


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-22T10:{minute:02d}:{second:02d}.000000Z"


def leg(n: int, when: str, amount_minor: int) -> tuple[ItemRef, Item]:
    txn = f"txn_{n:04d}"
    item = {
        "pk": f"{TENANT}#{txn}",
        "sk": "LEG#0001#01",
        "tenant_id": TENANT,
        "txn_id": txn,
        "entry_sk": f"{when}#{txn}#0001#01",
        "account_id": f"acc_{n % 2}",
        "account_kind": "user",
        "currency": "EUR",
        "leg_amount_minor": amount_minor,
        "phase": "SETTLED",
        "recorded_at": when,
        "effective_at": when,
    }
    return ItemRef(item["entry_sk"], LEG, item["pk"], item["sk"]), item


def event(n: int, when: str, action: str = "transfer.settled") -> tuple[ItemRef, Item]:
    item = {
        "pk": f"{TENANT}#{when[:10]}",
        "sk": f"{when}#evt_{n:04d}",
        "tenant_id": TENANT,
        "event_id": f"evt_{n:04d}",
        "action": action,
        "actor": "key:k1",
        "correlation_id": "c1",
        "payload": json.dumps({"n": n, "note": "line one\nline two"}),
        "payload_hash": "0" * 64,
        "recorded_at": when,
    }
    return ItemRef(item["sk"], AUDIT, item["pk"], item["sk"]), item


def sign_block(block: dict[str, Any]) -> BlockSignature:
    raw = KEY.sign(signed_bytes(block), ec.ECDSA(hashes.SHA256()))
    return BlockSignature(KEY_ID, "ECDSA_SHA_256", base64.b64encode(raw).decode())


def chain(groups: list[list[tuple[ItemRef, Item]]]) -> list[SealedBlock]:
    blocks, previous = [], GENESIS_HASH
    for seq, group in enumerate(groups, start=1):
        leaves = [leaf_of(ref, item) for ref, item in sorted(group, key=lambda made: made[0])]
        block = build_block(
            tenant_id=TENANT, seq=seq, previous_block_hash=previous, leaves=leaves, created_at=at(50 + seq)
        )
        blocks.append(SealedBlock(block, block_hash(block), sign_block(block), tuple(leaves)))
        previous = block_hash(block)
    return blocks


class Scenario:
    """Legs and audit events in three blocks: one leg and one event before the scope (block 1 holds them), the rest
    in it; the bundle exports the blocks 1..3 covering the scope."""

    def __init__(self) -> None:
        self.legs = [leg(0, "2026-11-22T09:59:00.000000Z", 500)] + [
            leg(n, at(n), (-1) ** n * 100 * n) for n in range(1, 7)
        ]
        self.events = [event(0, "2026-11-22T09:59:30.000000Z")] + [
            event(n, at(n, 30), "screening.checked" if n % 3 == 0 else "transfer.settled") for n in range(1, 7)
        ]
        made = self.legs + self.events
        self.blocks = chain([made[0:1] + made[7:8] + made[1:3], made[3:5] + made[8:11], made[5:7] + made[11:14]])

    def scoped(self, made: list[tuple[ItemRef, Item]]) -> list[Item]:
        return [item for ref, item in sorted(made, key=lambda m: m[0]) if SCOPE[0] <= item["recorded_at"] < SCOPE[1]]


def write_bundle(
    directory: Path,
    scenario: Scenario,
    *,
    legs: list[Item] | None = None,
    events: list[Item] | None = None,
    blocks: list[SealedBlock] | None = None,
    sign_with: ec.EllipticCurvePrivateKey = KEY,
) -> Path:
    """A bundle as the exporter writes it (the real writer, a local key in place of KMS)."""
    directory.mkdir(parents=True, exist_ok=True)
    legs = scenario.scoped(scenario.legs) if legs is None else legs
    events = scenario.scoped(scenario.events) if events is None else events
    writer = BundleWriter(directory)
    ledger, tally = writer.kind(LEDGER), ExposureTally()
    for item in legs:
        ledger.add(item)
        if "leg_amount_minor" in item:  # a test may slip an audit event in among the legs
            tally.add(item)
    exposure = writer.kind(EXPOSURE)
    for row in tally.rows():
        exposure.add(row)
    audit, timeline = writer.kind(AUDIT_EVENTS), writer.kind(COMPLIANCE_TIMELINE)
    for item in events:
        audit.add(item)
        if is_compliance_action(item["action"]):
            timeline.add(item)
    for sealed in scenario.blocks if blocks is None else blocks:
        writer.blocks.add(sealed)

    def manifest_of(files: list[dict[str, Any]], blocks_entry: dict[str, Any]) -> bytes:
        return manifest_bytes(
            build_manifest(
                bundle_id="exp_1",
                origin="admin",
                tenant_id=TENANT,
                scope_from=SCOPE[0],
                scope_to=SCOPE[1],
                kinds=[LEDGER, EXPOSURE, AUDIT_EVENTS, COMPLIANCE_TIMELINE],
                requested_by={"actor": "key:admin1", "role": "compliance_officer", "correlation_id": "c"},
                requested_at=at(59),
                created_at=at(59, 30),
                files=files,
                blocks=blocks_entry,
                key_id=KEY_ID,
                algorithm="ECDSA_SHA_256",
            )
        )

    path = directory / "bundle.zip"
    writer.finish(path, manifest_of, lambda data: sign_with.sign(data, ec.ECDSA(hashes.SHA256())), pem(KEY))
    return path


def rewrite(path: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Path:
    """The same ZIP with its files changed by `change` (names -> bytes, in order)."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    tampered = path.with_name("tampered.zip")
    with zipfile.ZipFile(tampered, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in change(files).items():
            archive.writestr(name, data)
    return tampered


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def joined(rows: list[bytes]) -> bytes:
    return b"".join(row + b"\n" for row in rows)


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def bundle(tmp_path: Path, scenario: Scenario) -> Path:
    return write_bundle(tmp_path, scenario)


def test_a_genuine_bundle_verifies_and_says_what_it_covered(bundle: Path, scenario: Scenario) -> None:
    report = verify_bundle(bundle)
    assert report.ok, report.failure
    summary = report.summary
    assert summary["rows"]["ledger.jsonl"] == 6 and summary["rows"]["audit.jsonl"] == 6
    assert summary["rows"]["compliance_timeline.jsonl"] == 2  # the screening events
    assert summary["rows"]["audit.csv"] == 6  # CSV records, though payloads hold newlines
    assert summary["blocks"] == {
        "count": 3,
        "first_seq": 1,
        "last_seq": 3,
        "head_hash": scenario.blocks[-1].block_hash,
    }
    assert summary["sealed_items_in_scope"] == {LEG: 6, AUDIT: 6}
    assert summary["public_key"]["source"] == "bundle"
    trusted = verify_bundle(bundle, pem(KEY))
    assert trusted.ok and trusted.summary["public_key"]["source"] == "argument"


def test_every_line_of_a_sealed_file_hashes_to_its_leaf(bundle: Path, scenario: Scenario) -> None:
    """What makes `sha256sum` enough: a JSONL line is the item's canonical JSON, so its SHA-256 is the sealed hash."""
    with zipfile.ZipFile(bundle) as archive:
        ledger = lines(archive.read("ledger.jsonl"))
    sealed = {leaf.item_hash for block in scenario.blocks for leaf in block.leaves}
    import hashlib

    assert ledger and all(hashlib.sha256(row).hexdigest() in sealed for row in ledger)
    assert ledger[0] == canonical_bytes(scenario.scoped(scenario.legs)[0])


def test_a_changed_leg_row_is_named_with_its_row_block_and_item(bundle: Path, scenario: Scenario) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        rows = lines(files["ledger.jsonl"])
        rows[1] = rows[1].replace(b'"leg_amount_minor":200', b'"leg_amount_minor":20000')
        return {**files, "ledger.jsonl": joined(rows)}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "item_hash_mismatch"
    assert (failure.file, failure.row, failure.block_seq) == ("ledger.jsonl", 2, 1)
    assert failure.item is not None and failure.item["pk"] == f"{TENANT}#txn_0002"
    sealed = next(leaf for leaf in scenario.blocks[0].leaves if leaf.ref.pk == f"{TENANT}#txn_0002")
    assert failure.expected == sealed.item_hash and failure.found != sealed.item_hash


def test_a_dropped_audit_row_is_named_by_the_sealed_event_it_lacks(bundle: Path) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        rows = lines(files["audit.jsonl"])
        return {**files, "audit.jsonl": joined(rows[:2] + rows[3:])}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "row_missing"
    assert failure.file == "audit.jsonl" and failure.block_seq == 2
    assert failure.item is not None and failure.item["sk"] == f"{at(3, 30)}#evt_0003"


def test_reordered_blocks_break_the_chain_at_the_first_misplaced_block(bundle: Path) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        rows = lines(files["blocks.jsonl"])
        return {**files, "blocks.jsonl": joined([rows[1], rows[0], rows[2]])}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "sequence_gap"
    assert (failure.file, failure.row, failure.block_seq) == ("blocks.jsonl", 1, 2)
    assert (failure.expected, failure.found) == ("1", "2")


def test_an_altered_manifest_fails_its_signature(bundle: Path) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        return {**files, "manifest.json": files["manifest.json"].replace(b'"rows":6', b'"rows":7', 1)}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "manifest_signature_invalid" and failure.file == "manifest.json"


def test_a_bundle_signed_by_another_key_fails_against_the_trusted_key(tmp_path: Path, scenario: Scenario) -> None:
    forged = write_bundle(tmp_path, scenario, sign_with=OTHER_KEY)
    assert verify_bundle(forged).failure.code == "manifest_signature_invalid"  # type: ignore[union-attr]
    forged_key = rewrite(forged, lambda files: {**files, "public_key.pem": pem(OTHER_KEY)})
    # The forger's own key makes the manifest verify, but the blocks are MonCore's: their signatures do not.
    failure = verify_bundle(forged_key).failure
    assert failure is not None and failure.code == "signature_invalid" and failure.block_seq == 1
    assert verify_bundle(forged_key, pem(KEY)).failure.code == "manifest_signature_invalid"  # type: ignore[union-attr]


def test_a_changed_leaf_hash_breaks_its_blocks_merkle_root(bundle: Path, scenario: Scenario) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        rows = lines(files["blocks.jsonl"])
        document = json.loads(rows[1])
        document["items"][0]["item_hash"] = "ab" * 32
        rows[1] = canonical_bytes(document)
        return {**files, "blocks.jsonl": joined(rows)}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "merkle_root_mismatch"
    assert (failure.file, failure.row, failure.block_seq) == ("blocks.jsonl", 2, 2)


def test_a_changed_csv_record_is_a_file_hash_mismatch(bundle: Path) -> None:
    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        return {**files, "ledger.csv": files["ledger.csv"].replace(b",-100,", b",-900,", 1)}

    failure = verify_bundle(rewrite(bundle, change)).failure
    assert failure is not None and failure.code == "file_hash_mismatch" and failure.file == "ledger.csv"


def test_files_added_or_removed_are_named(bundle: Path) -> None:
    extra = verify_bundle(rewrite(bundle, lambda files: {**files, "notes.txt": b"hello"})).failure
    assert extra is not None and (extra.code, extra.file) == ("unexpected_file", "notes.txt")
    gone = verify_bundle(rewrite(bundle, lambda files: {k: v for k, v in files.items() if k != "exposure.csv"}))
    assert gone.failure is not None and (gone.failure.code, gone.failure.file) == ("file_missing", "exposure.csv")


def test_an_exporter_cannot_slip_in_unsealed_or_out_of_scope_rows(tmp_path: Path, scenario: Scenario) -> None:
    """Even with a manifest signed by the right key (a faulty exporter), rows must be sealed items of the scope."""
    unsealed = [*scenario.scoped(scenario.legs), leg(99, at(40), 1)[1]]
    failure = verify_bundle(write_bundle(tmp_path / "a", scenario, legs=unsealed)).failure
    assert failure is not None and failure.code == "item_unsealed"
    assert (failure.file, failure.row) == ("ledger.jsonl", 7) and failure.item == {
        "kind": "leg",
        "pk": f"{TENANT}#txn_0099",
        "sk": "LEG#0001#01",
    }
    before = [scenario.legs[0][1], *scenario.scoped(scenario.legs)]
    failure = verify_bundle(write_bundle(tmp_path / "b", scenario, legs=before)).failure
    assert failure is not None and (failure.code, failure.row, failure.block_seq) == ("row_out_of_scope", 1, 1)
    twice = [*scenario.scoped(scenario.legs), scenario.scoped(scenario.legs)[0]]
    failure = verify_bundle(write_bundle(tmp_path / "c", scenario, legs=twice)).failure
    assert failure is not None and (failure.code, failure.row) == ("row_duplicated", 7)
    legs_as_events = scenario.scoped(scenario.events)[:1] + scenario.scoped(scenario.legs)
    failure = verify_bundle(write_bundle(tmp_path / "d", scenario, legs=legs_as_events)).failure
    assert failure is not None and (failure.code, failure.row) == ("row_kind_mismatch", 1)


def test_a_bundle_may_carry_a_run_of_the_chain_but_not_one_with_a_hole(tmp_path: Path, scenario: Scenario) -> None:
    """A bundle over a later scope starts after block 1: its first block links to the hash the signed manifest states
    (the block's own signed previous_block_hash), so bundles chain to each other; a block missing inside the run is a
    sequence gap."""
    segment = scenario.blocks[1:]
    legs = [item for _, item in scenario.legs[3:7]]
    events = [item for _, item in scenario.events[1:7]]
    report = verify_bundle(write_bundle(tmp_path / "a", scenario, legs=legs, events=events, blocks=segment))
    assert report.ok, report.failure
    assert report.summary["blocks"]["first_seq"] == 2

    gap = write_bundle(tmp_path / "b", scenario, blocks=[scenario.blocks[0], scenario.blocks[2]])
    failure = verify_bundle(gap).failure
    assert failure is not None and (failure.code, failure.file, failure.row) == ("sequence_gap", "blocks.jsonl", 2)
    assert (failure.expected, failure.found) == ("2", "3")


def test_not_a_zip_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert verify_bundle(junk).failure.code == "bundle_unreadable"  # type: ignore[union-attr]


def test_moncore_verify_exits_0_or_1_naming_the_first_failure(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(bundle)]) == 0
    assert "every check holds" in capsys.readouterr().out
    key = tmp_path / "moncore.pem"
    key.write_bytes(pem(KEY))
    assert main(["verify", str(bundle), "--public-key", str(key)]) == 0
    capsys.readouterr()

    def change(files: dict[str, bytes]) -> dict[str, bytes]:
        rows = lines(files["ledger.jsonl"])
        return {**files, "ledger.jsonl": joined(rows[1:])}

    assert main(["verify", str(rewrite(bundle, change)), "--json"]) == 1
    failure = json.loads(capsys.readouterr().out)["failure"]
    assert failure["code"] == "row_missing" and failure["file"] == "ledger.jsonl"


def test_the_verifier_imports_nothing_that_reaches_aws() -> None:
    code = (
        "import sys, moncore.cli, moncore.audit.verifier; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'boto3', 'botocore', 'pynamodb', 'urllib3'} "
        "or m in {'moncore.config', 'moncore.store'}); print(','.join(bad))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == ""
