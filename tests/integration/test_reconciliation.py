"""Daily reconciliation on Step Functions (statemachines/reconciliation.asl.json on moto's engine, tasks in the real
handler's worker processes), driven over the admin API: statements from the sandbox bank adapter or uploaded to the
evidence bucket, reports in the Object Lock bucket with their SHA-256, exceptions with status, retries of a bank
outage, the Catch path, idempotency per (tenant, provider, date), four-eyes adjustments."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature

from tests.integration.helpers import Tenant, fund, idem, ledger_items, new_account, new_tenant, new_user, table_items

pytestmark = pytest.mark.xdist_group("integration")

PROVIDER = "sandbox_open_banking_instant"  # the local stack's tenants fund through it (infra/local_stack.py)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def start(call: Any, admin_key: str, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = {"tenant_id": tenant.id, "provider": PROVIDER, "date": today(), **extra}
    started = call("POST", "/admin/v1/reconciliations", key=admin_key, json=body, headers=idem())
    assert started.status == 202, started.json()
    return dict(started.json())


def finished(call: Any, admin_key: str, run_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = call("GET", f"/admin/v1/reconciliations/{run_id}", key=admin_key)
        assert got.status == 200, got.json()
        if got.json()["status"] != "RUNNING":
            return dict(got.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"reconciliation {run_id} still running after {timeout_s} s: {got.json()}")
        time.sleep(0.2)


def reconcile(call: Any, admin_key: str, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    return finished(call, admin_key, start(call, admin_key, tenant, **extra)["id"])


def funded(call: Any, admin_key: str, amounts: tuple[int, ...]) -> tuple[Tenant, list[str], list[str]]:
    """A tenant with one funding per amount: (tenant, provider references, transaction ids)."""
    tenant = new_tenant(call, admin_key, "Reconciliation")
    account = new_account(call, tenant, new_user(call, tenant))
    fundings = [fund(call, tenant, account, amount) for amount in amounts]
    return tenant, [f["provider"]["reference"] for f in fundings], [f["id"] for f in fundings]


def bank_plan(tenant: Tenant, **plan: Any) -> None:
    """What the sandbox bank does with the tenant's statement of today (its own state, like a test-mode switch)."""
    from moncore.providers.statements import SandboxBankStatements, SandboxPlan

    SandboxBankStatements.plan(tenant.id, today(), SandboxPlan(**plan))


def verify_signature(document: dict[str, Any], signature: dict[str, str]) -> None:
    """With the KMS public key, RFC 8785 and `cryptography` only: no MonCore code."""
    import base64

    import rfc8785
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = boto3.client("kms").get_public_key(KeyId=signature["key_id"])["PublicKey"]
    public_key = serialization.load_der_public_key(der)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    value = base64.b64decode(signature["value_b64"])
    public_key.verify(value, rfc8785.dumps(document), ec.ECDSA(hashes.SHA256()))


def evidence(obj: dict[str, Any]) -> bytes:
    """An evidence object as stored (the recorded version), checked against the SHA-256 the run recorded."""
    import os

    version = {"VersionId": obj["version_id"]} if obj.get("version_id") else {}
    got = boto3.client("s3").get_object(Bucket=os.environ["MONCORE_EVIDENCE_BUCKET"], Key=obj["key"], **version)
    data = bytes(got["Body"].read())
    assert hashlib.sha256(data).hexdigest() == obj["sha256"]
    assert got["ObjectLockMode"] == "COMPLIANCE"  # the bucket's default retention holds it
    return data


def upload(tenant: Tenant, name: str, data: bytes) -> str:
    import os

    key = f"statements/{tenant.id}/{name}"
    boto3.client("s3").put_object(
        Bucket=os.environ["MONCORE_EVIDENCE_BUCKET"], Key=key, Body=data, ChecksumAlgorithm="SHA256"
    )
    return key


def execution(local_backend: Any, run: dict[str, Any]) -> dict[str, Any]:
    arn = local_backend.ctx.refs["ReconciliationStateMachine"].replace(":stateMachine:", ":execution:")
    client = boto3.client("stepfunctions")
    execution_arn = f"{arn}:{run['execution_name']}"
    deadline = time.monotonic() + 30
    while (described := client.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.2)
    events = client.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return dict(described) | {"events": events}


def outcomes(run: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (e["outcome"], e["reference"], e["bank_minor"], e["ledger_minor"], tuple(e["txn_ids"]))
        for e in run["exceptions"]["items"]
    }


def test_a_run_reports_exactly_the_item_that_matches_differs_is_missing_and_is_extra(call: Any, admin_key: str) -> None:
    tenant, refs, txns = funded(call, admin_key, (10_000, 20_000, 30_000))
    bank_plan(tenant, amounts={refs[1]: 20_500}, drop=(refs[2],), extra=(extra_line("BANK-ONLY-1", 4_200),))

    run = reconcile(call, admin_key, tenant)

    assert run["status"] == "COMPLETED", run["error"]
    assert run["counts"] == {
        "matched": 1,
        "amount_mismatch": 1,
        "missing_at_bank": 1,
        "missing_in_ledger": 1,
        "currency_mismatch": 0,
        "duplicate": 0,
    }
    assert outcomes(run) == {
        ("amount_mismatch", refs[1].upper(), 20_500, 20_000, (txns[1],)),
        ("missing_at_bank", refs[2].upper(), 0, 30_000, (txns[2],)),
        ("missing_in_ledger", "BANK-ONLY-1", 4_200, 0, ()),
    }
    assert {e["status"] for e in run["exceptions"]["items"]} == {"open"}
    # The bank holds 100 + 205 + 42 = 347.00; the clients 600.00, of which 300.00 is still on its way to the bank;
    # the 47.00 left are exactly the amount mismatch and the extra line.
    assert run["balance_check"] == [
        {
            "currency": "EUR",
            "bank_closing_minor": 34_700,
            "bank_closing_date": today(),
            "client_balances_minor": 60_000,
            "in_flight_minor": -30_000,
            "expected_bank_minor": 30_000,
            "difference_minor": 4_700,
            "exceptions_minor": 4_700,
            "residual_minor": 0,
            "balanced": False,
            "explained": True,
        }
    ]

    report = json.loads(evidence(run["reports"]["json"]))
    assert run["reports"]["json"]["key"] == f"reconciliations/{tenant.id}/{today()}/{run['id']}/report.json"
    assert report["run"]["id"] == run["id"] and report["balance_check"] == run["balance_check"]
    by_outcome = {r["outcome"]: r for r in report["results"]}
    assert len(report["results"]) == 4 and by_outcome["matched"]["txn_ids"] == [txns[0]]
    assert {r["exception_id"] for r in report["results"]} == {None} | {e["id"] for e in run["exceptions"]["items"]}
    rows = list(csv.DictReader(io.StringIO(evidence(run["reports"]["csv"]).decode())))
    assert sorted((r["outcome"], r["difference_minor"]) for r in rows) == [
        ("amount_mismatch", "500"),
        ("matched", "0"),
        ("missing_at_bank", "-30000"),
        ("missing_in_ledger", "4200"),
    ]
    statement = evidence(run["statement"])  # the delivered file, kept as it came
    assert run["statement"]["key"].startswith(f"statements/{tenant.id}/{PROVIDER}/{today()}/")
    assert b"camt.053.001.02" in statement and run["statement"]["formats"] == ["camt.053.001.02"]
    # The completed run is signed: a regulator checks it with the public key and the report files' hashes alone.
    document = run["document"]
    assert (document["run_id"], document["tenant_id"], document["date"]) == (run["id"], tenant.id, today())
    assert document["reports"] == {
        name: hashlib.sha256(evidence(obj)).hexdigest() for name, obj in run["reports"].items()
    }
    assert document["statement_sha256"] == hashlib.sha256(statement).hexdigest() and document["counts"] == run["counts"]
    verify_signature(document, run["signature"])
    with pytest.raises(InvalidSignature):
        verify_signature(document | {"counts": document["counts"] | {"matched": 4}}, run["signature"])


def test_a_transient_bank_outage_is_retried_and_the_run_succeeds(call: Any, admin_key: str, local_backend: Any) -> None:
    tenant, _, _ = funded(call, admin_key, (5_000,))
    bank_plan(tenant, unavailable_calls=1)

    run = reconcile(call, admin_key, tenant)

    assert run["status"] == "COMPLETED" and run["counts"]["matched"] == 1, run
    history = execution(local_backend, run)
    assert history["status"] == "SUCCEEDED"
    failures = [e["taskFailedEventDetails"] for e in history["events"] if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failures] == ["ProviderUnavailable"]  # once, then the retry succeeded


def test_a_bank_down_beyond_the_retries_ends_in_the_catch_path_and_a_new_attempt_completes(
    call: Any, admin_key: str, local_backend: Any
) -> None:
    tenant, _, _ = funded(call, admin_key, (5_000,))
    bank_plan(tenant, unavailable_calls=10)

    failed = reconcile(call, admin_key, tenant)

    assert failed["status"] == "FAILED" and failed["attempt"] == 1
    assert failed["error"]["type"] == "ProviderUnavailable" and failed["error"]["task"] == "ingest"
    assert "unavailable" in failed["error"]["message"]
    assert failed["reports"] is None and failed["exceptions"]["items"] == []
    history = execution(local_backend, failed)
    assert (history["status"], history.get("error")) == ("FAILED", "ReconciliationFailed")
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"] if e["type"].endswith("StateEntered")]
    assert entered.count("IngestStatement") == 1  # one state, retried inside it, then caught
    assert entered[-5:] == ["RecordFailure", "RunFailed", "Conclude", "Outcome", "Failed"]

    bank_plan(tenant)  # the bank is back
    again = reconcile(call, admin_key, tenant)
    assert (again["id"], again["status"], again["attempt"]) == (failed["id"], "COMPLETED", 2)


def test_an_uploaded_statement_is_reconciled_once_per_tenant_provider_and_date(
    call: Any, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, refs, txns = funded(call, admin_key, (12_345, 6_000))
    key = upload(tenant, "bank-export.xml", camt053(refs[0]))

    first = start(call, admin_key, tenant, statement_s3_key=key)
    run = finished(call, admin_key, first["id"])

    assert run["status"] == "COMPLETED", run["error"]
    assert run["statement"]["key"] == key and run["lines"]["bank_lines"] == 2
    assert outcomes(run) == {
        ("missing_in_ledger", "BANK-FEE-7", -150, 0, ()),
        ("missing_at_bank", refs[1].upper(), 0, 6_000, (txns[1],)),
    }
    records = [i for i in table_items("MONCORE_RECONCILIATIONS_TABLE") if i["pk"] == run["id"]]
    page = call("GET", f"/admin/v1/reconciliations/{run['id']}", key=admin_key, query={"limit": "1"}).json()
    rest = call(
        "GET",
        f"/admin/v1/reconciliations/{run['id']}",
        key=admin_key,
        query={"limit": "1", "cursor": page["exceptions"]["next_cursor"]},
    ).json()
    assert page["exceptions"]["next_cursor"] and rest["exceptions"]["next_cursor"] is None
    assert page["exceptions"]["items"] + rest["exceptions"]["items"] == run["exceptions"]["items"]
    bad_cursor = call("GET", f"/admin/v1/reconciliations/{run['id']}", key=admin_key, query={"cursor": "garbage"})
    assert bad_cursor.status == 422

    again = start(call, admin_key, tenant, statement_s3_key=key)
    assert (again["id"], again["status"], again["started"]) == (run["id"], "COMPLETED", False)
    from moncore.cli import main  # `moncore jobs run reconciliation`: the state machine, with its progress bar

    assert main(["jobs", "run", "reconciliation", "--tenant", tenant.id, "--date", today()]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["runs"] == 0 and "reconciliation [" in printed.err  # nothing left to reconcile
    assert [i for i in table_items("MONCORE_RECONCILIATIONS_TABLE") if i["pk"] == run["id"]] == records
    assert finished(call, admin_key, run["id"]) == run


def test_a_malformed_statement_fails_the_run_with_a_clear_error_and_is_kept(call: Any, admin_key: str) -> None:
    tenant, refs, _ = funded(call, admin_key, (1_000,))
    key = upload(tenant, "broken.xml", camt053(refs[0]).replace(b">123.45<", b">123.456<"))

    run = reconcile(call, admin_key, tenant, statement_s3_key=key)

    assert run["status"] == "FAILED"
    assert run["error"]["type"] == "StatementMalformed" and run["error"]["task"] == "ingest"
    assert "broken.xml: line" in run["error"]["message"] and "'123.456' has 3 decimals" in run["error"]["message"]
    assert run["counts"]["matched"] == 0 and run["exceptions"]["items"] == []
    import os

    s3, bucket = boto3.client("s3"), os.environ["MONCORE_EVIDENCE_BUCKET"]
    kept = s3.head_object(Bucket=bucket, Key=key)
    assert kept["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=kept["VersionId"])


def test_an_adjustment_needs_a_second_admin_and_then_posts_once_linked_to_its_exception(
    call: Any, admin_key: str, second_admin: str
) -> None:
    tenant, _, _ = funded(call, admin_key, (8_000,))
    bank_plan(tenant, extra=(extra_line("UNKNOWN-CREDIT", 4_200),))
    run = reconcile(call, admin_key, tenant)
    (exception,) = run["exceptions"]["items"]
    assert exception["outcome"] == "missing_in_ledger" and exception["status"] == "open"
    path = f"/admin/v1/reconciliations/{run['id']}"

    propose = f"{path}/exceptions/{exception['id']}/adjustments"
    withdrawn = call("POST", propose, key=admin_key, json={"reason": "typo"}, headers=idem()).json()
    rejected = call("POST", f"{path}/adjustments/{withdrawn['id']}/reject", key=admin_key, json={})
    assert rejected.status == 200 and rejected.json()["status"] == "rejected"
    assert finished(call, admin_key, run["id"])["exceptions"]["items"][0]["status"] == "open"  # proposable again
    proposed = call(
        "POST", propose, key=admin_key, json={"reason": "unidentified credit: book to suspense"}, headers=idem()
    )
    assert proposed.status == 201, proposed.json()
    adjustment = proposed.json()
    assert (adjustment["status"], adjustment["difference_minor"]) == ("proposed", 4_200)
    approve = f"{path}/adjustments/{adjustment['id']}/approve"

    refused = call("POST", approve, key=admin_key, json={})
    assert (refused.status, refused.json()["code"]) == (403, "four_eyes_required")
    approved = call("POST", approve, key=second_admin, json={})
    assert approved.status == 200, approved.json()
    txn_id = approved.json()["txn_id"]
    assert approved.json()["status"] == "approved" and txn_id
    repeated = call("POST", approve, key=second_admin, json={})
    assert repeated.status == 200 and repeated.json()["txn_id"] == txn_id

    posted = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()
    assert (posted["type"], posted["status"], posted["reference"]) == ("adjustment", "SETTLED", exception["id"])
    assert posted["compliance"]["checks"][0]["approved_by"] != posted["compliance"]["checks"][0]["proposed_by"]
    assert sorted((leg["account_id"], leg["amount_minor"]) for leg in posted["legs"]) == [
        ("sys_reconciliation_suspense_eur", 4_200),
        ("sys_safeguarding_eur", -4_200),
    ]
    assert len([i for i in ledger_items(tenant.id) if i["sk"] == "TXN" and i["type"] == "adjustment"]) == 1
    (resolved,) = finished(call, admin_key, run["id"])["exceptions"]["items"]
    assert (resolved["status"], resolved["adjustment_id"], resolved["txn_id"]) == ("resolved", adjustment["id"], txn_id)
    again = call("POST", propose, key=admin_key, json={"reason": "x"}, headers=idem())
    assert (again.status, again.json()["code"]) == (409, "invalid_state_transition")


def test_bad_reconciliation_requests_are_problems_and_start_nothing(call: Any, admin_key: str) -> None:
    tenant, _, _ = funded(call, admin_key, (1_000,))
    body = {"tenant_id": tenant.id, "provider": PROVIDER, "date": today()}
    refused = {
        "no such day": (body | {"date": "2026-02-30"}, 422),
        "tomorrow": (body | {"date": "2999-01-01"}, 422),
        "a date and time": (body | {"date": "2026-01-31T00"}, 422),
        "outside statements/": (body | {"statement_s3_key": "reconciliations/x.xml"}, 422),
        "a parent path": (body | {"statement_s3_key": "statements/../reports/x.xml"}, 422),
        "no such object": (body | {"statement_s3_key": f"statements/{tenant.id}/missing.xml"}, 422),
        "no adapter, no file": (body | {"provider": "unknown_bank"}, 422),
        "unknown field": (body | {"amount_minor": 1}, 422),
        "unknown tenant": (body | {"tenant_id": "ten_doesnotexist"}, 404),
    }
    for case, (sent, status) in refused.items():
        got = call("POST", "/admin/v1/reconciliations", key=admin_key, json=sent, headers=idem())
        assert (case, got.status, got.headers["Content-Type"]) == (case, status, "application/problem+json")
    assert call("POST", "/admin/v1/reconciliations", key=tenant.key, json=body, headers=idem()).status in (401, 403)
    assert call("GET", "/admin/v1/reconciliations/rec_unknown", key=admin_key).status == 404
    path = f"/admin/v1/reconciliations/{'rec_unknown'}"
    assert (
        call("POST", f"{path}/exceptions/rex_1/adjustments", key=admin_key, json={"reason": "x"}, headers=idem()).status
        == 404
    )
    assert call("POST", f"{path}/adjustments/adj_1/approve", key=admin_key, json={}).status == 404
    assert [i for i in table_items("MONCORE_RECONCILIATIONS_TABLE") if i["tenant_id"] == tenant.id] == []


def extra_line(reference: str, amount_minor: int) -> Any:
    from moncore.providers.statements import ExtraLine

    return ExtraLine(reference, amount_minor, "EUR")


def camt053(matching_ref: str) -> bytes:
    """A bank's export as it might be uploaded: one credit naming the funding's provider reference (123.45 EUR), one
    fee debit the ledger never saw (1.50 EUR); the second funding is not on it."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>EXPORT-1</MsgId><CreDtTm>{today()}T23:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>EXPORT-1-EUR</Id><CreDtTm>{today()}T23:00:00</CreDtTm>
      <Acct><Id><IBAN>FR7630006000011234567890189</IBAN></Id><Ccy>EUR</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
        <Dt><Dt>{today()}</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">121.95</Amt><CdtDbtInd>CRDT</CdtDbtInd>
        <Dt><Dt>{today()}</Dt></Dt></Bal>
      <Ntry><Amt Ccy="EUR">123.45</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>{today()}</Dt></BookgDt><AcctSvcrRef>BANK-1</AcctSvcrRef>
        <NtryDtls><TxDtls><Refs><EndToEndId>{matching_ref}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>
      <Ntry><Amt Ccy="EUR">1.50</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>{today()}</Dt></BookgDt><AcctSvcrRef>BANK-2</AcctSvcrRef>
        <NtryDtls><TxDtls><Refs><EndToEndId>BANK-FEE-7</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
""".encode()


@pytest.fixture(scope="module")
def second_admin(local_backend: Any) -> str:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="reconciliation-approver", role="admin")[1]
