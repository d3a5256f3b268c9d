"""Sealing end to end on DynamoDB Local + moto (docs/audit.md): the seal job (the Jobs function's handler, as the
schedule invokes it) seals legs and audit events into signed blocks; GET /v1/transactions/{id}/proof answers proofs
that verify with hashlib, an RFC 8785 library and `cryptography` against the KMS public key, no MonCore code; a
second run seals only what is new; locked copies cannot be removed; and after tampering directly in DynamoDB the
chain-integrity job names each change precisely. Every assertion on detection needs a block: with sealing disabled
(no seal run) the proofs answer 409 and the same tampering goes unnoticed (shown first in the tamper test)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import rfc8785
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.integration.helpers import Tenant, fund, ledger_items, new_account, new_tenant, new_user, table_items
from tests.integration.ledger_scenario import transfer

pytestmark = pytest.mark.xdist_group("integration")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LambdaContext:
    function_name: str = "moncore-sandbox-jobs"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:moncore-sandbox-jobs"
    aws_request_id: str = "req-sealing"


def jobs_handler(event: dict[str, Any]) -> dict[str, Any]:
    """functions/jobs/app.py's handler, imported as Lambda imports it, invoked with `event`."""
    spec = importlib.util.spec_from_file_location("moncore_jobs_app", REPO_ROOT / "functions" / "jobs" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.lambda_handler(event, LambdaContext()))


def run(job: str, tenant: Tenant) -> dict[str, Any]:
    """The job for one tenant, as EventBridge Scheduler invokes the Jobs function."""
    return dict(jobs_handler({"job": job, "tenant_id": tenant.id})["results"][0])


def broken_chain(tenant: Tenant) -> dict[str, Any]:
    """verify_chain on a tampered chain: the run fails (the Lambda invocation errors, the CLI exits 1)."""
    from moncore.ledger.jobs import JobFailed

    with pytest.raises(JobFailed) as failed:
        run("verify_chain", tenant)
    result = dict(failed.value.result["results"][0])
    assert result["ok"] is False and result["error"] == "chain_broken"
    return dict(result["failure"])


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verify_by_hand(leg: dict[str, Any]) -> None:
    """A partner's or regulator's check of one leg's proof: only hashlib, RFC 8785 and the KMS public key."""
    item_bytes = rfc8785.dumps(leg["item"])
    assert hashlib.sha256(item_bytes).hexdigest() == leg["item_hash"], "the item does not hash to its sealed hash"
    acc = sha256(b"\x00" + bytes.fromhex(leg["item_hash"]))
    for step in leg["proof"]["path"]:
        sibling = bytes.fromhex(step["hash"])
        acc = sha256(b"\x01" + (sibling + acc if step["side"] == "left" else acc + sibling))
    assert acc.hex() == leg["block"]["merkle_root"], "the proof does not reach the block's merkle_root"
    assert leg["proof"]["tree_size"] == leg["block"]["item_count"]
    block_bytes = rfc8785.dumps(leg["block"])
    assert hashlib.sha256(block_bytes).hexdigest() == leg["block_hash"]
    der = boto3.client("kms").get_public_key(KeyId=leg["signature"]["key_id"])["PublicKey"]
    public_key = load_der_public_key(der)
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    assert leg["signature"]["algorithm"] == "ECDSA_SHA_256"
    public_key.verify(base64.b64decode(leg["signature"]["value_b64"]), block_bytes, ec.ECDSA(hashes.SHA256()))


def seals_of(tenant: Tenant) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_SEALS_TABLE"])
    answer = table.query(
        KeyConditionExpression="pk = :t", ExpressionAttributeValues={":t": tenant.id}, ConsistentRead=True
    )
    return list(answer["Items"])


def audit_keys(tenant: Tenant) -> set[tuple[str, str]]:
    return {(i["pk"], i["sk"]) for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant.id}


def leg_keys(tenant: Tenant) -> set[tuple[str, str]]:
    return {(i["pk"], i["sk"]) for i in ledger_items(tenant.id) if str(i["sk"]).startswith("LEG#")}


def sealed_keys(tenant: Tenant) -> set[tuple[str, str, str]]:
    return {(leaf["kind"], leaf["pk"], leaf["sk"]) for s in seals_of(tenant) for leaf in json.loads(s["leaves"])}


def copy_key(tenant: Tenant, seq: int) -> str:
    return f"seals/{tenant.id}/{seq:012d}.json"


@pytest.fixture
def moved(call: Any, admin_key: str) -> tuple[Tenant, str, list[str]]:
    """A tenant with a funding and two transfers: (tenant, payer account, transaction ids)."""
    tenant = new_tenant(call, admin_key, "Sealing")
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    txns = [fund(call, tenant, payer, 10_000)["id"]]
    txns += [transfer(call, tenant, payer, payee, 2_550)["id"], transfer(call, tenant, payee, payer, 300)["id"]]
    return tenant, payer, txns


def test_a_proof_over_http_verifies_with_hashlib_and_the_kms_public_key_alone(
    call: Any, admin_key: str, moved: tuple[Tenant, str, list[str]]
) -> None:
    tenant, _, txns = moved
    waiting = call("GET", f"/v1/transactions/{txns[1]}/proof", key=tenant.key)
    assert waiting.status == 409 and waiting.json()["code"] == "not_sealed"
    assert waiting.headers["content-type"] == "application/problem+json"

    sealed = run("seal", tenant)
    assert sealed["blocks"] == [1] and sealed["items"] == len(leg_keys(tenant)) + len(audit_keys(tenant))
    assert sealed["max_lag_ms"] > 0
    assert sealed_keys(tenant) == {("leg", *k) for k in leg_keys(tenant)} | {("audit", *k) for k in audit_keys(tenant)}

    for txn_id in txns:
        answer = call("GET", f"/v1/transactions/{txn_id}/proof", key=tenant.key)
        assert answer.status == 200, answer.json()
        proof = answer.json()
        shown = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()
        assert proof["txn_id"] == txn_id and len(proof["legs"]) == len(shown["legs"]) >= 2
        for leg, seen in zip(proof["legs"], shown["legs"], strict=True):
            verify_by_hand(leg)
            assert leg["item"]["txn_id"] == txn_id and leg["item"]["tenant_id"] == tenant.id
            assert (leg["item"]["account_id"], leg["item"]["leg_amount_minor"]) == (
                seen["account_id"],
                seen["amount_minor"],
            )
            assert leg["block"]["seq"] == 1 and leg["block"]["tenant_id"] == tenant.id

    # The locked copy is the block document, canonical bytes, naming every sealed item's hash.
    document = proof["legs"][0]
    copy = boto3.client("s3").get_object(Bucket=os.environ["MONCORE_EVIDENCE_BUCKET"], Key=copy_key(tenant, 1))
    assert copy["ObjectLockMode"] == "COMPLIANCE"
    body = copy["Body"].read()
    stored = json.loads(body)
    assert rfc8785.dumps(stored) == body
    assert stored["block"] == document["block"] and stored["block_hash"] == document["block_hash"]
    assert document["item_hash"] in {leaf["item_hash"] for leaf in stored["items"]}

    other = new_tenant(call, admin_key, "Someone Else")
    assert call("GET", f"/v1/transactions/{txns[1]}/proof", key=other.key).status == 404
    assert call("GET", "/v1/transactions/txn_nope/proof", key=tenant.key).json()["code"] == "not_found"
    assert "/v1/transactions/{txn_id}/proof" in call("GET", "/v1/openapi.json").json()["paths"]


def test_a_second_run_seals_only_new_items_and_locked_copies_stay(
    call: Any, moved: tuple[Tenant, str, list[str]]
) -> None:
    from moncore.store import evidence

    tenant, payer, _ = moved
    payee = new_account(call, tenant, new_user(call, tenant))
    assert run("seal", tenant)["blocks"] == [1]
    assert run("seal", tenant) == {"tenant_id": tenant.id, "blocks": [], "items": 0, "head": 1, "max_lag_ms": 0}

    before_legs, before_audit = leg_keys(tenant), audit_keys(tenant)
    later = transfer(call, tenant, payer, payee, 125)
    new = {("leg", *k) for k in leg_keys(tenant) - before_legs} | {
        ("audit", *k) for k in audit_keys(tenant) - before_audit
    }
    assert {kind for kind, _, _ in new} == {"leg", "audit"}
    first = sealed_keys(tenant)

    # This time the stream trigger (as the Ledger and Audit table streams invoke the Jobs function on AWS) seals them.
    client = boto3.client("dynamodb")
    tables = {"leg": os.environ["MONCORE_LEDGER_TABLE"], "audit": os.environ["MONCORE_AUDIT_TABLE"]}
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "NewImage": client.get_item(TableName=tables[kind], Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
            },
        }
        for kind, pk, sk in sorted(new)
    ]
    triggered = jobs_handler({"Records": records})
    assert triggered["job"] == "seal" and triggered["tenants"] == 1
    second = dict(triggered["results"][0])
    assert second["tenant_id"] == tenant.id and second["blocks"] == [2] and second["items"] == len(new)
    assert sealed_keys(tenant) - first == new
    one, two = sorted(seals_of(tenant), key=lambda s: s["seq"])
    assert json.loads(two["block"])["previous_block_hash"] == one["block_hash"]
    assert call("GET", f"/v1/transactions/{later['id']}/proof", key=tenant.key).json()["legs"][0]["block"]["seq"] == 2

    s3 = boto3.client("s3")
    bucket = os.environ["MONCORE_EVIDENCE_BUCKET"]
    key = copy_key(tenant, 1)
    head = s3.head_object(Bucket=bucket, Key=key)
    version, original = head["VersionId"], s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(evidence.EvidenceExists):
        evidence.put_once(key, b"{}")
    # Without the condition S3 adds a newer version; the locked one stays, byte for byte, and the chain check (which
    # reads the current version) reports the difference.
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}", ChecksumAlgorithm="SHA256")
    assert s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == original
    failure = broken_chain(tenant)
    assert (failure["code"], failure["block_seq"]) == ("copy_mismatch", 1)


def test_verify_chain_pinpoints_each_change_made_directly_in_dynamodb(
    call: Any, moved: tuple[Tenant, str, list[str]]
) -> None:
    client = boto3.client("dynamodb")
    ledger, audit, seals = (
        os.environ["MONCORE_LEDGER_TABLE"],
        os.environ["MONCORE_AUDIT_TABLE"],
        os.environ["MONCORE_SEALS_TABLE"],
    )
    tenant, _, txns = moved
    leg_pk, leg_sk = f"{tenant.id}#{txns[1]}", "LEG#0001#01"
    leg_key = {"pk": {"S": leg_pk}, "sk": {"S": leg_sk}}
    original_leg = client.get_item(TableName=ledger, Key=leg_key, ConsistentRead=True)["Item"]

    def set_amount(amount_minor: int) -> None:
        client.put_item(TableName=ledger, Item={**original_leg, "leg_amount_minor": {"N": str(amount_minor)}})

    # Without a seal, the same change is invisible: nothing commits to the leg's content yet.
    set_amount(-999_999)
    unsealed = run("verify_chain", tenant)
    assert unsealed["ok"] is True and unsealed["blocks"] == 0 and unsealed["pending"] > 0
    client.put_item(TableName=ledger, Item=original_leg)

    assert run("seal", tenant)["blocks"] == [1]
    clean = run("verify_chain", tenant)
    assert clean["ok"] is True and clean["blocks"] == 1 and clean["items"] == len(sealed_keys(tenant))
    sealed_leg_hash = next(
        leaf["item_hash"]
        for leaf in json.loads(seals_of(tenant)[0]["leaves"])
        if (leaf["pk"], leaf["sk"]) == (leg_pk, leg_sk)
    )

    # 1. One leg's amount changed.
    set_amount(-999_999)
    failure = broken_chain(tenant)
    assert (failure["code"], failure["block_seq"]) == ("item_hash_mismatch", 1)
    assert (failure["item"]["kind"], failure["item"]["pk"], failure["item"]["sk"]) == ("leg", leg_pk, leg_sk)
    assert failure["expected"] == sealed_leg_hash != failure["found"]
    tampered_proof = call("GET", f"/v1/transactions/{txns[1]}/proof", key=tenant.key).json()
    with pytest.raises(AssertionError, match="does not hash to its sealed hash"):
        verify_by_hand(next(leg for leg in tampered_proof["legs"] if leg["item"]["sk"] == leg_sk))
    client.put_item(TableName=ledger, Item=original_leg)
    assert run("verify_chain", tenant)["ok"] is True

    # 2. One audit event deleted.
    event_pk, event_sk = sorted(audit_keys(tenant))[0]
    event_key = {"pk": {"S": event_pk}, "sk": {"S": event_sk}}
    original_event = client.get_item(TableName=audit, Key=event_key, ConsistentRead=True)["Item"]
    client.delete_item(TableName=audit, Key=event_key)
    failure = broken_chain(tenant)
    assert (failure["code"], failure["block_seq"], failure["found"]) == ("item_missing", 1, None)
    assert (failure["item"]["kind"], failure["item"]["pk"], failure["item"]["sk"]) == ("audit", event_pk, event_sk)
    client.put_item(TableName=audit, Item=original_event)

    # 3. A block's items reordered, then 4. the block itself altered.
    block_key = {"pk": {"S": tenant.id}, "seq": {"N": "1"}}
    original_block = client.get_item(TableName=seals, Key=block_key, ConsistentRead=True)["Item"]
    leaves = json.loads(original_block["leaves"]["S"])
    swapped = [leaves[1], leaves[0], *leaves[2:]]
    client.put_item(TableName=seals, Item={**original_block, "leaves": {"S": json.dumps(swapped)}})
    failure = broken_chain(tenant)
    assert (failure["code"], failure["block_seq"]) == ("items_out_of_order", 1)
    assert failure["item"]["sk"] == leaves[0]["sk"]

    block = json.loads(original_block["block"]["S"])
    altered = {**block, "item_count": block["item_count"] - 1}
    client.put_item(TableName=seals, Item={**original_block, "block": {"S": json.dumps(altered)}})
    failure = broken_chain(tenant)
    assert (failure["code"], failure["block_seq"]) == ("block_hash_mismatch", 1)
    assert failure["expected"] == original_block["block_hash"]["S"] != failure["found"]
    client.put_item(TableName=seals, Item=original_block)
    assert run("verify_chain", tenant)["ok"] is True

    # The failures were audited: each failed run left a job.verify_chain event naming its detail.
    events = [
        i
        for i in table_items("MONCORE_AUDIT_TABLE")
        if i["tenant_id"] == tenant.id and i["action"] == "job.verify_chain"
    ]
    details = {json.loads(e["payload"])["summary"].get("code") for e in events}
    assert {"item_hash_mismatch", "item_missing", "items_out_of_order", "block_hash_mismatch"} <= details
