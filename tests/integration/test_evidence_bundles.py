"""Exports and regulator evidence bundles end to end (docs/audit.md "Exports and evidence bundles"): requested over
real HTTP (the local API Gateway served on a socket), built by the exports state machine (moto's engine; the Jobs
function seals, the Exports function builds, each in its worker process), downloaded by presigned URL with urllib
from the local S3 (moto server), and verified three ways: `moncore verify` in a subprocess, `sha256sum -c` over the
manifest's hashes, and `openssl dgst -verify` of the manifest signature against the KMS public key. Tampering with
the ZIP, or with the history in DynamoDB before a bundle is made, is named precisely by the verifier; the locked
object cannot be deleted or overwritten; other tenants get 404."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from tests.integration.helpers import Tenant, fund, idem, ledger_items, new_account, new_tenant, new_user, table_items
from tests.integration.ledger_scenario import transfer

pytestmark = pytest.mark.xdist_group("integration")

MONCORE = Path(sys.executable).with_name("moncore")  # the console script the project installs
ALL_KINDS = ["ledger", "exposure", "compliance_timeline", "audit"]

Http = Callable[..., tuple[int, Any]]


def instant(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def http(gateway: Any) -> Iterator[Http]:
    """The template's API served over a real socket; (status, JSON body) per request, with urllib."""
    server = gateway.serve("127.0.0.1", 0)

    def send(method: str, path: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **idem()}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    yield send
    server.stop()


@dataclass
class Scenario:
    tenant: Tenant
    scope: dict[str, str]


def scenario(call: Any, admin_key: str, name: str) -> Scenario:
    """A tenant with a funding, two transfers and a screening check, and the scope [before it, after it)."""
    start = instant(datetime.now(UTC) - timedelta(seconds=2))
    tenant = new_tenant(call, admin_key, name)
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 10_000)
    from moncore.ledger.jobs import run_job

    assert run_job("seal", tenant.id)["results"][0]["blocks"] == [1]  # the rest goes into the bundle's own seal run
    transfer(call, tenant, payer, payee, 2_550)
    transfer(call, tenant, payee, payer, 300)
    checked = call("POST", "/v1/screening/checks", key=tenant.key, json={"name": "Ada Lovelace"})
    assert checked.status == 200, checked.json()  # audited: a row of the compliance timeline
    return Scenario(tenant, {"from": start, "to": instant()})


def wait_ready(http: Http, path: str, key: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, record = http("GET", path, key)
        assert status == 200, record
        if record["status"] in ("READY", "FAILED"):
            assert record["status"] == "READY", record.get("error")
            return dict(record)
        assert time.monotonic() < deadline, f"still {record['status']} after {timeout_s} s: {record}"
        time.sleep(0.2)


def download(url: str, path: Path) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # a plain HTTP client, no AWS credentials
        data = response.read()
    path.write_bytes(data)
    return bytes(data)


def verify(bundle: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`moncore verify` as a regulator runs it: another process, no AWS settings in its environment."""
    offline = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MONCORE_"))}
    return subprocess.run(
        [str(MONCORE), "verify", str(bundle), *options],
        check=False,
        capture_output=True,
        text=True,
        env=offline,
        timeout=60,
    )


def kms_public_key_pem(tmp: Path) -> Path:
    """The signing key's public key fetched from KMS (not from the bundle), as PEM."""
    der = boto3.client("kms").get_public_key(KeyId=os.environ["MONCORE_SIGNING_KEY_ID"])["PublicKey"]
    path = tmp / "moncore-kms.pem"
    path.write_bytes(
        serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def rewrite(bundle: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Path:
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    tampered = bundle.with_name(f"tampered-{time.monotonic_ns()}.zip")
    with zipfile.ZipFile(tampered, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in change(files).items():
            archive.writestr(name, data)
    return tampered


def rows(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def object_of(url: str) -> tuple[str, str]:
    """(bucket, key) of a path-style presigned URL of the local S3."""
    bucket, key = urllib.parse.urlparse(url).path.lstrip("/").split("/", 1)
    return bucket, urllib.parse.unquote(key)


@dataclass
class Made:
    scenario: Scenario
    record: dict[str, Any]
    path: Path


@pytest.fixture(scope="module")
def regulator_bundle(call: Any, admin_key: str, http: Http, tmp_path_factory: pytest.TempPathFactory) -> Made:
    """An admin evidence bundle of every kind over the scenario's scope, requested over HTTP, downloaded by URL."""
    made = scenario(call, admin_key, "Evidence")
    status, answer = http(
        "POST", "/admin/v1/evidence-bundles", admin_key, {"tenant_id": made.tenant.id, "kinds": ALL_KINDS, **made.scope}
    )
    assert status == 202 and answer["status"] == "REQUESTED", answer
    record = wait_ready(http, f"/admin/v1/evidence-bundles/{answer['id']}", admin_key)
    path = tmp_path_factory.mktemp("bundle") / "bundle.zip"
    data = download(record["download_url"], path)
    assert hashlib.sha256(data).hexdigest() == record["sha256"] and len(data) == record["bytes"]
    return Made(made, record, path)


def test_a_regulator_bundle_verifies_with_moncore_sha256sum_and_openssl(regulator_bundle: Made, tmp_path: Path) -> None:
    from moncore.store import exports as export_store

    tenant, record = regulator_bundle.scenario.tenant, regulator_bundle.record
    manifest = record["manifest"]
    assert manifest["tenant_id"] == tenant.id and manifest["kinds"] == ALL_KINDS
    assert manifest["scope"]["from"] == regulator_bundle.scenario.scope["from"]
    assert manifest["requested_by"]["role"] == "admin" and manifest["requested_by"]["actor"].startswith("key:")
    seals = boto3.resource("dynamodb").Table(os.environ["MONCORE_SEALS_TABLE"])
    blocks = seals.query(KeyConditionExpression="pk = :t", ExpressionAttributeValues={":t": tenant.id})["Items"]
    head = max(blocks, key=lambda block: block["seq"])  # sealed by the state machine's Seal step
    assert manifest["blocks"]["first_seq"] == 1 and manifest["blocks"]["head_hash"] == head["block_hash"]

    checked = verify(regulator_bundle.path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "every check holds" in checked.stdout
    trusted = verify(regulator_bundle.path, "--public-key", str(kms_public_key_pem(tmp_path)))
    assert trusted.returncode == 0 and "argument public key" in trusted.stdout, trusted.stdout

    # Independently: every file's SHA-256 with sha256sum, the manifest signature with openssl and the KMS key.
    with zipfile.ZipFile(regulator_bundle.path) as archive:
        archive.extractall(tmp_path)
    sums = "".join(f"{entry['sha256']}  {entry['name']}\n" for entry in manifest["files"])
    (tmp_path / "manifest.sha256").write_text(sums)
    summed = subprocess.run(
        ["sha256sum", "-c", "manifest.sha256"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert summed.returncode == 0 and summed.stdout.count(": OK") == len(manifest["files"]), summed.stdout
    for key in ("public_key.pem", "moncore-kms.pem"):
        signed = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", key, "-signature", "manifest.sig", "manifest.json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert signed.returncode == 0 and "Verified OK" in signed.stdout, signed.stdout + signed.stderr
    assert json.loads((tmp_path / "manifest.json").read_bytes()) == manifest

    # The rows are the tenant's history as stored: every leg, every audit event of the scope, each line hashing to
    # the item hash its block's leaf holds.
    legs = [i for i in ledger_items(tenant.id) if str(i["sk"]).startswith("LEG#")]
    scope = regulator_bundle.scenario.scope
    events = [
        i
        for i in table_items("MONCORE_AUDIT_TABLE")
        if i["tenant_id"] == tenant.id and scope["from"] <= i["recorded_at"] < scope["to"]
    ]
    counts = {entry["name"]: entry["rows"] for entry in manifest["files"]}
    assert counts["ledger.jsonl"] == counts["ledger.csv"] == len(legs) >= 6
    assert counts["audit.jsonl"] == len(events) and counts["compliance_timeline.jsonl"] >= 1
    leaves = {leaf["item_hash"] for block in blocks for leaf in json.loads(block["leaves"])}
    ledger_lines = rows((tmp_path / "ledger.jsonl").read_bytes())
    assert {hashlib.sha256(line).hexdigest() for line in ledger_lines} <= leaves
    exposure = [json.loads(line) for line in rows((tmp_path / "exposure.jsonl").read_bytes())]
    assert sum(row["legs"] for row in exposure) == len(legs)
    assert sum(row["credit_minor"] - row["debit_minor"] for row in exposure) == 0  # zero-sum per currency

    # The record is append-only: each status change a new version, progress on the way, audited at both ends.
    history = export_store.history(record["id"])
    statuses = [item.status for item in history]
    assert statuses[0] == "REQUESTED" and statuses[-1] == "READY" and "RUNNING" in statuses
    assert [item.version for item in history] == list(range(1, len(history) + 1))
    steps = {(item.document.get("progress") or {}).get("step") for item in history}
    assert {"legs", "audit_events", "blocks", "upload"} <= steps
    actions = {i["action"] for i in table_items("MONCORE_AUDIT_TABLE") if i.get("subject_id") == record["id"]}
    assert actions == {"evidence_bundle.requested", "evidence_bundle.completed"}


def test_tampering_with_the_zip_is_named_by_the_verifier(regulator_bundle: Made) -> None:
    def changed_leg(files: dict[str, bytes]) -> dict[str, bytes]:
        lines = rows(files["ledger.jsonl"])
        item = json.loads(lines[1])
        item["leg_amount_minor"] += 1
        lines[1] = json.dumps(item, separators=(",", ":"), sort_keys=True).encode()
        return {**files, "ledger.jsonl": joined(lines)}

    def dropped_event(files: dict[str, bytes]) -> dict[str, bytes]:
        lines = rows(files["audit.jsonl"])
        return {**files, "audit.jsonl": joined(lines[:1] + lines[2:])}

    def reordered_blocks(files: dict[str, bytes]) -> dict[str, bytes]:
        return {**files, "blocks.jsonl": joined(list(reversed(rows(files["blocks.jsonl"]))))}

    def altered_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
        return {**files, "manifest.json": files["manifest.json"].replace(b'"origin":"admin"', b'"origin":"audit"')}

    assert len(rows(zipfile.ZipFile(regulator_bundle.path).read("blocks.jsonl"))) >= 2  # something to reorder
    expected = {
        changed_leg: ("item_hash_mismatch", "file ledger.jsonl, row 2, block 1, item leg "),
        dropped_event: ("row_missing", "file audit.jsonl, block 1, item audit "),
        reordered_blocks: ("sequence_gap", "file blocks.jsonl, row 1, block "),
        altered_manifest: ("manifest_signature_invalid", "file manifest.json"),
    }
    for change, (code, where) in expected.items():
        checked = verify(rewrite(regulator_bundle.path, change))
        assert checked.returncode == 1, (change.__name__, checked.stdout)
        assert checked.stdout.startswith(f"FAILED {code}:"), (change.__name__, checked.stdout)
        assert f"where: {where}" in checked.stdout, (change.__name__, checked.stdout)


def test_the_locked_bundle_cannot_be_deleted_or_overwritten(regulator_bundle: Made) -> None:
    s3 = boto3.client("s3")
    bucket, key = object_of(regulator_bundle.record["download_url"])
    assert bucket == os.environ["MONCORE_EVIDENCE_BUCKET"]
    assert key.startswith(f"exports/{regulator_bundle.scenario.tenant.id}/{regulator_bundle.record['id']}/")
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retention_days = int(os.environ["MONCORE_EVIDENCE_RETENTION_DAYS"])
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=retention_days, hours=-1)
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key=key, Body=b"forged", IfNoneMatch="*", ChecksumAlgorithm="SHA256")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    # Without the condition S3 only adds a newer version: the locked one is still there, byte for byte.
    s3.put_object(Bucket=bucket, Key=key, Body=b"forged", ChecksumAlgorithm="SHA256")
    kept = s3.get_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])["Body"].read()
    assert kept == regulator_bundle.path.read_bytes()


def test_a_partner_export_is_its_own_and_verifies_against_the_kms_key(
    call: Any, admin_key: str, http: Http, regulator_bundle: Made, tmp_path: Path
) -> None:
    from moncore.cli import main

    tenant = regulator_bundle.scenario.tenant
    scope = regulator_bundle.scenario.scope
    status, answer = http("POST", "/v1/exports", tenant.key, {"kind": "ledger", **scope})
    assert status == 202 and set(answer) >= {"id", "status"}, answer
    record = wait_ready(http, f"/v1/exports/{answer['id']}", tenant.key)
    assert record["manifest"]["kinds"] == ["ledger"] and record["manifest"]["origin"] == "partner"
    assert [entry["name"] for entry in record["manifest"]["files"]] == ["ledger.jsonl", "ledger.csv", "blocks.jsonl"]
    download(record["download_url"], tmp_path / "export.zip")
    checked = verify(tmp_path / "export.zip", "--public-key", str(kms_public_key_pem(tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert main(["exports", "show", answer["id"]]) == 0

    other = new_tenant(call, admin_key, "Someone Else")
    assert http("GET", f"/v1/exports/{answer['id']}", other.key)[0] == 404
    assert http("GET", f"/v1/exports/{regulator_bundle.record['id']}", tenant.key)[0] == 404  # not a partner export
    assert http("GET", f"/admin/v1/evidence-bundles/{answer['id']}", admin_key)[0] == 404
    assert http("GET", "/v1/exports/exp_nope", tenant.key)[0] == 404

    later = instant(datetime.now(UTC) + timedelta(hours=1))
    for body in (
        {"kind": "ledger", "from": scope["to"], "to": scope["from"]},
        {"kind": "ledger", "from": scope["from"], "to": later},
        {"kind": "balances", **scope},
        {"kind": "ledger", "from": "yesterday", "to": scope["to"]},
    ):
        refused_status, refused = http("POST", "/v1/exports", tenant.key, body)
        assert refused_status == 422 and refused["code"] == "validation_error", (body, refused)
    unknown = {"tenant_id": "ten_nope", "kinds": ["audit"], **scope}
    assert http("POST", "/admin/v1/evidence-bundles", admin_key, unknown)[0] == 404
    assert http("POST", "/admin/v1/evidence-bundles", tenant.key, {**unknown, "tenant_id": tenant.id})[0] in (401, 403)


def test_history_changed_in_dynamodb_is_named_by_the_bundle_verifier(
    call: Any, admin_key: str, http: Http, tmp_path: Path
) -> None:
    """Changes made behind the sealer's back, each caught in the next bundle: an audit event deleted, a leg changed,
    a block's items reordered (made in that order, since the verifier checks blocks, then legs, then events)."""
    from moncore.ledger.jobs import run_job

    made = scenario(call, admin_key, "Tampered")
    tenant = made.tenant
    assert run_job("seal", tenant.id)["results"][0]["blocks"] == [2]
    client = boto3.client("dynamodb")
    tables = {name: os.environ[f"MONCORE_{name.upper()}_TABLE"] for name in ("ledger", "audit", "seals")}

    def bundle_failure() -> str:
        body = {"tenant_id": tenant.id, "kinds": ["ledger", "audit"], **made.scope}
        status, answer = http("POST", "/admin/v1/evidence-bundles", admin_key, body)
        assert status == 202, answer
        record = wait_ready(http, f"/admin/v1/evidence-bundles/{answer['id']}", admin_key)
        path = tmp_path / f"{answer['id']}.zip"
        download(record["download_url"], path)
        checked = verify(path)
        assert checked.returncode == 1, checked.stdout
        return checked.stdout

    event = min((i for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant.id), key=lambda i: i["sk"])
    client.delete_item(TableName=tables["audit"], Key={"pk": {"S": event["pk"]}, "sk": {"S": event["sk"]}})
    named = bundle_failure()
    assert named.startswith("FAILED row_missing:") and f"item audit {event['pk']} / {event['sk']}" in named

    leg = min((i for i in ledger_items(tenant.id) if str(i["sk"]).startswith("LEG#")), key=lambda i: i["entry_sk"])
    key = {"pk": {"S": leg["pk"]}, "sk": {"S": leg["sk"]}}
    stored = client.get_item(TableName=tables["ledger"], Key=key, ConsistentRead=True)["Item"]
    changed = str(int(stored["leg_amount_minor"]["N"]) + 1)
    client.put_item(TableName=tables["ledger"], Item={**stored, "leg_amount_minor": {"N": changed}})
    named = bundle_failure()
    assert named.startswith("FAILED item_hash_mismatch:") and "file ledger.jsonl, row 1, block 1" in named
    assert f"item leg {leg['pk']} / {leg['sk']}" in named

    block_key = {"pk": {"S": tenant.id}, "seq": {"N": "1"}}
    block = client.get_item(TableName=tables["seals"], Key=block_key, ConsistentRead=True)["Item"]
    leaves = json.loads(block["leaves"]["S"])
    swapped = json.dumps([leaves[1], leaves[0], *leaves[2:]])
    client.put_item(TableName=tables["seals"], Item={**block, "leaves": {"S": swapped}})
    named = bundle_failure()
    assert named.startswith("FAILED items_out_of_order:") and "file blocks.jsonl, row 1, block 1" in named
