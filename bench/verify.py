"""Offline bundle verification bench: how fast `moncore verify` checks an evidence bundle (docs/audit.md "Verifying a
bundle offline").

A synthetic tenant history (legs two per transfer, one audit event per transfer, recorded one per millisecond) is
sealed into blocks of 500 items with a local P-256 key exactly as the seal job builds them (moncore.domain.seals), and
written as a bundle of every kind with the exporter's own writer (moncore/audit/bundle.py); then verify_bundle runs
on the ZIP, every check included (manifest signature, each file's SHA-256 and rows, chain, block signatures, Merkle
roots, every row against its leaf, completeness). Reported: legs per second (the target is >= 100,000) and sealed
items (legs + audit events) per second, over the median of the repeats. No AWS, no DynamoDB: the verifier is offline.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import report

NAME = "verify"
DEFAULT_LEGS = 100_000
DEFAULT_REPEATS = 3
TARGET_LEGS_PER_S = 100_000
TENANT = "ten_bench"
KEY_ID = "arn:aws:kms:eu-west-1:123456789012:key/bench"
DAY = "2026-11-22"

log = logging.getLogger("bench.verify")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=DEFAULT_LEGS, help="legs in the bundle (half as many events)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the JSON and the doc alone")
    args = parser.parse_args(argv)
    data = run(args.legs, args.repeats)
    log.info("verify: %s", data["result"])
    if not args.no_write:
        data = {"bench": NAME, "date": report.now_utc(), "machine": report.machine(), **data}
        log.info("wrote %s", report.write_json(NAME, data))
        log.info("updated %s", report.update_section(NAME, markdown(data)))
    return 0 if data["result"]["ok"] else 1


def _instant(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{DAY}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}000Z"


def _history(legs: int) -> tuple[list[tuple[Any, dict[str, Any]]], list[tuple[Any, dict[str, Any]]]]:
    from moncore.domain.seals import AUDIT, LEG, ItemRef  # noqa: PLC0415

    leg_items, events = [], []
    for n in range(legs // 2):
        at = _instant(n)
        txn = f"txn_{n:010d}"
        for index, (account, amount) in enumerate((("acc_a", -2550), ("acc_b", 2550)), start=1):
            item = {
                "pk": f"{TENANT}#{txn}",
                "sk": f"LEG#0001#{index:02d}",
                "tenant_id": TENANT,
                "txn_id": txn,
                "entry_sk": f"{at}#{txn}#0001#{index:02d}",
                "account_pk": f"{TENANT}#{account}",
                "account_id": account,
                "account_kind": "user",
                "currency": "EUR",
                "leg_amount_minor": amount,
                "phase": "SETTLED",
                "recorded_at": at,
                "effective_at": at,
                "correlation_id": f"corr-{n}",
                "seq": 1,
            }
            leg_items.append((ItemRef(item["entry_sk"], LEG, item["pk"], item["sk"]), item))
        event = {
            "pk": f"{TENANT}#{DAY}",
            "sk": f"{at}#evt_{n:010d}",
            "tenant_id": TENANT,
            "event_id": f"evt_{n:010d}",
            "action": "transfer.settled",
            "actor": "key:key_bench",
            "correlation_id": f"corr-{n}",
            "subject_id": txn,
            "payload": json.dumps({"txn_id": txn, "amount_minor": 2550, "currency": "EUR"}),
            "payload_hash": "0" * 64,
            "recorded_at": at,
        }
        events.append((ItemRef(event["sk"], AUDIT, event["pk"], event["sk"]), event))
    return leg_items, events


def build(directory: Path, legs: int) -> Path:
    """The bundle: every kind, blocks of MAX_BLOCK_ITEMS in cursor order, signed with a fresh local key."""
    from moncore.audit.bundle import BundleWriter  # noqa: PLC0415
    from moncore.domain import seals  # noqa: PLC0415
    from moncore.domain.bundles import (  # noqa: PLC0415
        AUDIT_EVENTS,
        COMPLIANCE_TIMELINE,
        EXPOSURE,
        LEDGER,
        ExposureTally,
        build_manifest,
        manifest_bytes,
    )

    key = ec.generate_private_key(ec.SECP256R1())
    leg_items, events = _history(legs)
    writer = BundleWriter(directory)
    ledger, tally = writer.kind(LEDGER), ExposureTally()
    for _, item in leg_items:
        ledger.add(item)
        tally.add(item)
    exposure = writer.kind(EXPOSURE)
    for row in tally.rows():
        exposure.add(row)
    audit = writer.kind(AUDIT_EVENTS)
    for _, item in events:
        audit.add(item)
    writer.kind(COMPLIANCE_TIMELINE)  # none of these events is a compliance action: an empty file
    made = sorted(leg_items + events, key=lambda pair: pair[0])
    previous = seals.GENESIS_HASH
    for seq, start in enumerate(range(0, len(made), seals.MAX_BLOCK_ITEMS), start=1):
        leaves = [seals.leaf_of(ref, item) for ref, item in made[start : start + seals.MAX_BLOCK_ITEMS]]
        block = seals.build_block(
            tenant_id=TENANT, seq=seq, previous_block_hash=previous, leaves=leaves, created_at=f"{DAY}T23:59:59Z"
        )
        raw = key.sign(seals.signed_bytes(block), ec.ECDSA(hashes.SHA256()))
        signature = seals.BlockSignature(KEY_ID, seals.SIGNATURE_ALGORITHM, base64.b64encode(raw).decode())
        writer.blocks.add(seals.SealedBlock(block, seals.block_hash(block), signature, tuple(leaves)))
        previous = seals.block_hash(block)

    def manifest_of(files: list[dict[str, Any]], blocks: dict[str, Any]) -> bytes:
        return manifest_bytes(
            build_manifest(
                bundle_id="exp_bench",
                origin="admin",
                tenant_id=TENANT,
                scope_from=f"{DAY}T00:00:00.000000Z",
                scope_to=f"{DAY}T23:59:59.000000Z",
                kinds=[LEDGER, EXPOSURE, AUDIT_EVENTS, COMPLIANCE_TIMELINE],
                requested_by={"actor": "key:bench", "role": "admin", "correlation_id": "bench"},
                requested_at=f"{DAY}T23:59:59Z",
                created_at=f"{DAY}T23:59:59Z",
                files=files,
                blocks=blocks,
                key_id=KEY_ID,
                algorithm=seals.SIGNATURE_ALGORITHM,
            )
        )

    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = directory / "bundle.zip"
    writer.finish(path, manifest_of, lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())), pem)
    return path


def run(legs: int, repeats: int) -> dict[str, Any]:
    from moncore.audit.verifier import verify_bundle  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="moncore-bench-verify-") as workdir:
        started = time.perf_counter()
        path = build(Path(workdir), legs)
        build_s = time.perf_counter() - started
        size = path.stat().st_size
        timings, summary = [], {}
        for _ in range(repeats):
            started = time.perf_counter()
            verdict = verify_bundle(path)
            timings.append(time.perf_counter() - started)
            if not verdict.ok:
                raise RuntimeError(f"the bench bundle does not verify: {verdict.failure}")
            summary = verdict.summary
    median_s = statistics.median(timings)
    load_1m = os.getloadavg()[0]  # other processes share the CPUs: the numbers scale with what is left
    items = sum(summary["sealed_items_in_scope"].values())
    return {
        "parameters": {"legs": legs, "audit_events": legs // 2, "repeats": repeats, "block_items": 500},
        "bundle": {"bytes": size, "blocks": summary["blocks"]["count"], "build_s": round(build_s, 2)},
        "load_average_1m": round(load_1m, 2),
        "result": {
            "ok": True,
            "verify_s": [round(t, 3) for t in timings],
            "median_s": round(median_s, 3),
            "legs_per_s": round(legs / median_s),
            "items_per_s": round(items / median_s),
            "target_legs_per_s": TARGET_LEGS_PER_S,
            "meets_target": legs / median_s >= TARGET_LEGS_PER_S,
        },
    }


def markdown(data: dict[str, Any]) -> str:
    parameters, bundle, result = data["parameters"], data["bundle"], data["result"]
    return "\n".join(
        [
            "## Offline bundle verification (`moncore verify`)",
            "",
            f"`python -m bench verify` (bench/verify.py), {data['date']}: a bundle of {parameters['legs']:,} legs and "
            f"{parameters['audit_events']:,} audit events (every kind: JSONL and CSV), {bundle['blocks']} signed "
            f"blocks of {parameters['block_items']} items, {bundle['bytes'] / 1e6:.1f} MB zipped; every check run, "
            f"median of {parameters['repeats']}, one process, load average {data['load_average_1m']} on "
            f"{data['machine']['cpu_count']} CPUs. Raw data: "
            "[bench/results/verify.json](../bench/results/verify.json).",
            "",
            "| legs/s | sealed items/s | median | target |",
            "|---:|---:|---:|---|",
            f"| {result['legs_per_s']:,} | {result['items_per_s']:,} | {result['median_s']} s | "
            f">= {result['target_legs_per_s']:,} legs/s: {'met' if result['meets_target'] else 'NOT met'} |",
        ]
    )
