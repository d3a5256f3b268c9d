"""KYC through the API (docs/kyc.md): a check is started with the tenant's (sandbox) provider, its advisory result
arrives as a signed webhook on /webhooks/{provider} (no API key), and the kernel decides the tier. Also the
admin tenant-config route, the tier_enforcement job and the verification of tier-limit counters by rebuild.

Webhooks are built by the sandbox adapter's own `completion_event`, signed here with the secret read from Secrets
Manager (moto) and POSTed through the local gateway; tables are read with plain boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, new_account, new_tenant, table_items

pytestmark = pytest.mark.xdist_group("integration")

PROVIDER = "sandbox_kyc"
WEBHOOK = f"/webhooks/{PROVIDER}"
EUR = 100  # minor units per euro; tier_0 defaults: 1,000 EUR per transaction, 5,000 EUR balance cap


# ------------------------------------------------------------------------------------------------ helpers
def secrets_doc() -> dict[str, Any]:
    client = boto3.client("secretsmanager")
    return dict(json.loads(client.get_secret_value(SecretId=os.environ["MONCORE_WEBHOOK_SECRETS"])["SecretString"]))


def put_secrets(doc: dict[str, Any]) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=os.environ["MONCORE_WEBHOOK_SECRETS"], SecretString=json.dumps(doc)
    )


def current_secret() -> str:
    value = secrets_doc()[PROVIDER]
    return str(value if isinstance(value, str) else value[0])


def new_user(call: Any, tenant: Tenant, scenario: str = "") -> tuple[str, str]:
    """(user id, external_ref); `scenario` picks the sandbox provider's outcome (kyc_<scenario> in external_ref)."""
    external_ref = f"u-{uuid.uuid4().hex[:12]}" + (f"+kyc_{scenario}" if scenario else "")
    body = {"external_ref": external_ref, "full_name": "Ada Lovelace", "country": "FR"}
    made = call("POST", "/v1/users", key=tenant.key, headers=idem(), json=body)
    assert made.status == 201, made.json()
    return str(made.json()["id"]), external_ref


def start_check(call: Any, tenant: Tenant, user_id: str, level: str = "tier_1", key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return call("POST", f"/v1/users/{user_id}/kyc-checks", key=tenant.key, headers=headers, json={"level": level})


def completion(tenant: Tenant, user_id: str, external_ref: str, check_id: str, level: str = "tier_1") -> bytes:
    """The sandbox provider's webhook body for this check (its own wire format), as raw bytes."""
    from moncore.providers.kyc import Applicant, SandboxKyc, VerificationRequest

    request = VerificationRequest(tenant.id, user_id, check_id, level, Applicant(external_ref, "Ada", "FR", None))
    event = SandboxKyc().completion_event(request, event_id=f"sbxevt_{uuid.uuid4().hex}", created_at="2026-01-01")
    return json.dumps(event).encode()


def deliver(call: Any, body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> Any:
    """POST a webhook signed like the provider signs it: no Authorization header at all."""
    from moncore.domain.webhooks import signature_header

    header = signature_header(secret or current_secret(), int(time.time()) if timestamp is None else timestamp, body)
    return call("POST", WEBHOOK, headers={"MonCore-Signature": header, "Content-Type": "application/json"}, data=body)


def inbox() -> list[dict[str, Any]]:
    return table_items("MONCORE_WEBHOOK_EVENTS_TABLE")


def inbox_item(body: bytes) -> list[dict[str, Any]]:
    digest = hashlib.sha256(body).hexdigest()
    return [i for i in inbox() if i["body_sha256"] == digest]


def user(call: Any, tenant: Tenant, user_id: str) -> dict[str, Any]:
    got = call("GET", f"/v1/users/{user_id}", key=tenant.key)
    assert got.status == 200, got.json()
    return dict(got.json())


def audit(tenant: Tenant, action: str) -> list[dict[str, Any]]:
    return [i for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant.id and i["action"] == action]


def cases_of(call: Any, admin_key: str, tenant: Tenant) -> list[dict[str, Any]]:
    listed = call("GET", "/admin/v1/cases", key=admin_key, query={"tenant_id": tenant.id})
    assert listed.status == 200, listed.json()
    return list(listed.json()["items"])


def transfer(call: Any, tenant: Tenant, source: str, target: str, amount_minor: int) -> Any:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    return call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)


@pytest.fixture
def tenant(call: Any, admin_key: str) -> Tenant:
    return new_tenant(call, admin_key, "KYC")


@pytest.fixture
def verified(call: Any, tenant: Tenant) -> tuple[Tenant, str, str, dict[str, Any]]:
    """A user verified at tier_1 through the whole flow: (tenant, user id, external_ref, webhook answer)."""
    user_id, ref = new_user(call, tenant)
    check = start_check(call, tenant, user_id).json()
    answered = deliver(call, completion(tenant, user_id, ref, check["id"]))
    assert answered.status == 200, answered.json()
    return tenant, user_id, ref, answered.json()


# ------------------------------------------------------------------------------------------------ the flow
def test_a_signed_result_upgrades_the_tier_and_a_transfer_above_tier_0_then_passes(call: Any, tenant: Tenant) -> None:
    user_id, ref = new_user(call, tenant)
    source = new_account(call, tenant, user_id)
    target = new_account(call, tenant, new_user(call, tenant)[0])
    fund(call, tenant, source, 2_000 * EUR)
    assert user(call, tenant, user_id)["kyc_status"] == "unverified"
    refused = transfer(call, tenant, source, target, 1_500 * EUR)  # tier_0: 1,000 EUR per transaction
    assert refused.status == 422 and refused.json()["errors"][0]["tier"] == "tier_0", refused.json()

    key = str(uuid.uuid4())
    started = start_check(call, tenant, user_id, key=key)
    assert started.status == 202, started.json()
    check = started.json()
    assert (check["status"], check["provider"], check["level"], check["decision"]) == (
        "pending",
        PROVIDER,
        "tier_1",
        None,
    )
    assert check["provider_ref"].startswith("sbxkyc_")
    assert start_check(call, tenant, user_id, key=key).headers["idempotency-replayed"] == "true"
    assert user(call, tenant, user_id)["tier"] == "tier_0"  # nothing changes until the result arrives

    body = completion(tenant, user_id, ref, check["id"])
    answered = deliver(call, body)
    assert answered.status == 200, answered.json()
    assert (answered.json()["status"], answered.json()["decision"], answered.json()["tier_after"]) == (
        "processed",
        "approved",
        "tier_1",
    )
    now_user = user(call, tenant, user_id)
    assert (now_user["tier"], now_user["kyc_status"]) == ("tier_1", "verified")
    assert now_user["kyc_expires_at"] > now_user["kyc_checked_at"]
    got = call("GET", f"/v1/users/{user_id}/kyc-checks/{check['id']}", key=tenant.key).json()
    assert (got["status"], got["decision"], got["result"]["tier_before"]) == ("completed", "approved", "tier_0")
    assert got["advisory"]["recommended_tier"] == "tier_1" and got["advisory_sha256"]

    passed = transfer(call, tenant, source, target, 1_500 * EUR)
    assert passed.status == 201, passed.json()
    limits = next(c for c in passed.json()["compliance"]["checks"] if c.get("check") == "tier_limits")
    assert limits["tier"] == "tier_1"

    # The raw delivery was stored with the hash of its bytes; the decision was audited with the inputs' hash.
    (stored,) = inbox_item(body)
    assert (stored["status"], stored["tenant_id"], stored["subject_id"]) == ("PROCESSED", tenant.id, check["id"])
    assert bytes(stored["raw_body"].value) == body
    (adjudicated,) = audit(tenant, "kyc_check.adjudicated")
    payload = json.loads(adjudicated["payload"])
    assert payload["advisory_sha256"] == got["advisory_sha256"] and "liveness_passed" in payload["reasons"]
    assert (adjudicated["actor"], payload["tier_after"]) == ("system:kyc", "tier_1")


def test_a_redelivered_event_answers_200_and_changes_nothing(call: Any, tenant: Tenant) -> None:
    user_id, ref = new_user(call, tenant)
    check = start_check(call, tenant, user_id).json()
    body = completion(tenant, user_id, ref, check["id"])
    assert deliver(call, body).json()["status"] == "processed"
    before = (user(call, tenant, user_id), inbox_item(body))
    again = deliver(call, body)
    assert again.status == 200 and again.json()["status"] == "duplicate", again.json()
    assert (user(call, tenant, user_id), inbox_item(body)) == before
    assert len(audit(tenant, "kyc_check.adjudicated")) == 1
    # Another event for the same, already decided check: stored, ignored.
    other = deliver(call, completion(tenant, user_id, ref, check["id"]))
    assert (other.status, other.json()["status"]) == (200, "ignored"), other.json()
    assert len(audit(tenant, "kyc_check.adjudicated")) == 1


def test_an_invalid_signature_is_401_and_stored_as_a_rejected_attempt(call: Any, tenant: Tenant) -> None:
    user_id, ref = new_user(call, tenant)
    check = start_check(call, tenant, user_id).json()
    body = completion(tenant, user_id, ref, check["id"])
    forged = deliver(call, body, secret="not-the-secret")
    assert forged.status == 401, forged.json()
    assert (forged.json()["code"], forged.json()["errors"][0]["reason"]) == ("invalid_signature", "signature_mismatch")
    unsigned = call("POST", WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status == 401 and unsigned.json()["errors"][0]["reason"] == "missing_signature"
    garbage = call("POST", WEBHOOK, data=b"\x00not json", headers={"MonCore-Signature": "t=1,v1=zz"})
    assert garbage.status == 401 and garbage.json()["errors"][0]["reason"] == "malformed_signature"
    stored = inbox_item(body)
    assert sorted(i["reason"] for i in stored) == ["missing_signature", "signature_mismatch"]
    assert all(i["status"] == "REJECTED" and int(i["expires_at"]) > time.time() for i in stored)
    assert [i["reason"] for i in inbox_item(b"\x00not json")] == ["malformed_signature"]
    assert call("POST", WEBHOOK).status == 401  # no body, no header: still stored
    assert [i["reason"] for i in inbox_item(b"")][-1:] == ["missing_signature"]
    assert call("GET", f"/v1/users/{user_id}/kyc-checks/{check['id']}", key=tenant.key).json()["status"] == "pending"
    assert user(call, tenant, user_id)["tier"] == "tier_0"


def test_a_replay_outside_the_tolerance_is_refused(call: Any, tenant: Tenant) -> None:
    user_id, ref = new_user(call, tenant)
    check = start_check(call, tenant, user_id).json()
    body = completion(tenant, user_id, ref, check["id"])
    late = deliver(call, body, timestamp=int(time.time()) - 301)
    assert late.status == 401 and late.json()["errors"][0]["reason"] == "timestamp_outside_tolerance", late.json()
    assert [(i["status"], i["reason"]) for i in inbox_item(body)] == [("REJECTED", "timestamp_outside_tolerance")]
    assert user(call, tenant, user_id)["tier"] == "tier_0"
    assert deliver(call, body, timestamp=int(time.time()) - 200).status == 200  # within 5 minutes


@pytest.fixture
def restore_secrets() -> Iterator[dict[str, Any]]:
    original = secrets_doc()
    try:
        yield original
    finally:
        put_secrets(original)


def test_a_rotated_secret_is_accepted_alongside_the_old_one_until_the_old_one_is_retired(
    call: Any, tenant: Tenant, restore_secrets: dict[str, Any]
) -> None:
    old = current_secret()
    put_secrets(restore_secrets | {PROVIDER: ["rotated-secret-2026", old]})  # WebhookSecretCacheSeconds=0 in tests
    first, second, third = (new_user(call, tenant) for _ in range(3))
    checks = [start_check(call, tenant, user_id).json()["id"] for user_id, _ in (first, second, third)]
    bodies = [completion(tenant, u, r, c) for (u, r), c in zip((first, second, third), checks, strict=True)]
    assert deliver(call, bodies[0], secret=old).status == 200  # the provider still signs with the old one
    assert deliver(call, bodies[1], secret="rotated-secret-2026").status == 200  # and switches
    assert [int(inbox_item(b)[0]["secret_index"]) for b in bodies[:2]] == [1, 0]
    put_secrets(restore_secrets | {PROVIDER: "rotated-secret-2026"})  # the old one retired
    retired = deliver(call, bodies[2], secret=old)
    assert retired.status == 401 and retired.json()["errors"][0]["reason"] == "signature_mismatch"
    assert deliver(call, bodies[2], secret="rotated-secret-2026").status == 200


def test_pep_is_referred_no_upgrade_and_one_case(call: Any, admin_key: str, tenant: Tenant) -> None:
    user_id, ref = new_user(call, tenant, "pep")
    check = start_check(call, tenant, user_id, level="tier_2").json()
    body = completion(tenant, user_id, ref, check["id"], level="tier_2")
    answered = deliver(call, body)
    assert answered.status == 200, answered.json()
    assert (answered.json()["decision"], answered.json()["tier_after"]) == ("referred", "tier_0")
    assert answered.json()["case_id"]
    assert (user(call, tenant, user_id)["tier"], user(call, tenant, user_id)["kyc_status"]) == ("tier_0", "review")
    (case,) = cases_of(call, admin_key, tenant)
    assert (case["kind"], case["subject_user_id"], case["status"], case["id"]) == (
        "kyc_review",
        user_id,
        "OPEN",
        answered.json()["case_id"],
    )
    assert "risk_flag:pep" in case["reason"]
    got = call("GET", f"/v1/users/{user_id}/kyc-checks/{check['id']}", key=tenant.key).json()
    assert got["advisory"]["recommended_tier"] == "tier_2" and got["case_id"] == case["id"]  # advice not followed
    assert deliver(call, body).json()["status"] == "duplicate"
    assert len(cases_of(call, admin_key, tenant)) == 1


def test_events_for_unknown_or_foreign_checks_are_stored_and_answered_404(
    call: Any, admin_key: str, tenant: Tenant
) -> None:
    from moncore.domain.ids import derived_id

    # A result that races ahead of the check's own creation: 404, stored; its redelivery is then applied.
    user_id, ref = new_user(call, tenant)
    key = str(uuid.uuid4())
    early = completion(tenant, user_id, ref, derived_id("kyc", tenant.id, key))
    first = deliver(call, early)
    assert first.status == 404 and first.json()["code"] == "not_found", first.json()
    assert [i["status"] for i in inbox_item(early)] == ["UNMATCHED"]
    assert start_check(call, tenant, user_id, key=key).status == 202
    assert deliver(call, early).json()["status"] == "processed"
    assert user(call, tenant, user_id)["tier"] == "tier_1"

    # Isolation: an event naming another tenant's check (with this provider reference) touches nothing there.
    other = new_tenant(call, admin_key, "KYC other")
    victim, _ = new_user(call, other)
    victim_check = start_check(call, other, victim).json()
    mine_id, mine_ref = new_user(call, tenant)
    mine = start_check(call, tenant, mine_id).json()
    event = json.loads(completion(tenant, mine_id, mine_ref, mine["id"]))
    event["verification"]["reference"] = f"{other.id}:{victim_check['id']}"  # provider_ref stays tenant A's
    crossed = deliver(call, json.dumps(event).encode())
    assert crossed.status == 404, crossed.json()
    assert call("GET", f"/v1/users/{victim}/kyc-checks/{victim_check['id']}", key=other.key).json()["status"] == (
        "pending"
    )
    assert user(call, other, victim)["tier"] == "tier_0"
    # A tenant key reads only its own checks; an unknown provider is 404 and stored as rejected.
    assert call("GET", f"/v1/users/{victim}/kyc-checks/{victim_check['id']}", key=tenant.key).status == 404
    unknown = call("POST", "/webhooks/acme_kyc", data=b"{}", headers={"MonCore-Signature": "t=1,v1=00"})
    assert unknown.status == 404
    assert any(i["provider"] == "acme_kyc" and i["reason"] == "unknown_provider" for i in inbox())


def test_bad_requests_to_start_a_check(call: Any, tenant: Tenant) -> None:
    user_id, _ = new_user(call, tenant)
    assert start_check(call, tenant, user_id, level="tier_0").status == 422
    assert start_check(call, tenant, "usr_missing").status == 404
    down, _ = new_user(call, tenant, "unavailable")
    outage = start_check(call, tenant, down)
    assert outage.status == 503 and outage.json()["code"] == "provider_unavailable"
    key = str(uuid.uuid4())
    assert start_check(call, tenant, user_id, key=key).status == 202
    assert start_check(call, tenant, user_id, level="tier_2", key=key).status == 409


# ------------------------------------------------------------------------------------------------ admin config
def test_admins_change_tier_limits_and_jurisdictions(call: Any, admin_key: str, tenant: Tenant) -> None:
    from infra.local_stack import create_admin_key

    path = f"/admin/v1/tenants/{tenant.id}/config"
    tier_0 = {
        "EUR": {"per_transaction_minor": 300, "daily_minor": None, "monthly_minor": None, "balance_cap_minor": 500}
    }
    _, operator = create_admin_key(name="kyc-operator", role="operator")
    assert call("PATCH", path, key=operator, json={"tier_limits": {"tier_0": tier_0}}).status == 403
    assert call("PATCH", path, key=tenant.key, json={"jurisdictions": ["FR"]}).status in (401, 403)
    for bad in (
        {"tier_limits": {"tier_9": tier_0}},
        {"tier_limits": {"tier_0": {"EUR": {"per_transaction_minor": 1}}}},
        {"jurisdictions": ["IR"]},
        {"jurisdictions": []},
        {"jurisdictions": None},
    ):
        refused = call("PATCH", path, key=admin_key, json=bad)
        assert refused.status == 422, (bad, refused.json())

    user_id, _ = new_user(call, tenant)
    source = new_account(call, tenant, user_id)
    target = new_account(call, tenant, new_user(call, tenant)[0])
    fund(call, tenant, source, 1_000)
    changed = call(
        "PATCH", path, key=admin_key, json={"tier_limits": {"tier_0": tier_0}, "jurisdictions": ["FR", "BE"]}
    )
    assert changed.status == 200, changed.json()
    assert changed.json()["changed"] == ["jurisdictions", "tier_limits"]
    assert changed.json()["tier_limits"]["tier_0"]["EUR"]["per_transaction_minor"] == 300
    again = call("PATCH", path, key=admin_key, json={"jurisdictions": ["BE", "FR"]})
    assert again.json()["changed"] == [] and again.json()["config_version"] == changed.json()["config_version"]
    assert call("GET", f"/admin/v1/tenants/{tenant.id}", key=admin_key).json()["jurisdictions"] == ["BE", "FR"]
    (event,) = audit(tenant, "tenant.config_changed")
    assert json.loads(event["payload"])["before"]["jurisdictions"] == ["FR"]

    # The next movement is checked against the new limits (TenantConfigCacheSeconds=0 in tests) ...
    refused = transfer(call, tenant, source, target, 301)
    assert refused.status == 422 and refused.json()["errors"][0]["limit_minor"] == 300, refused.json()
    assert transfer(call, tenant, source, target, 300).status == 201
    # ... and the job flags the balance now above the lowered cap (500 minor units).
    from moncore.ledger.jobs import run_job

    (result,) = run_job("tier_enforcement", tenant.id)["results"]
    ((flag),) = result["flagged"]  # the payee's 300 is within the cap
    assert (flag["user_id"], flag["exceeded"]) == (
        user_id,
        [{"account_id": source, "currency": "EUR", "posted_minor": 700, "cap_minor": 500}],
    )
    assert call("PATCH", path, key=admin_key, json={"tier_limits": None}).json()["tier_limits"] == {}  # defaults


# ------------------------------------------------------------------------------------------------ tier_enforcement
def test_tier_enforcement_downgrades_expired_evidence_and_flags_balances_above_the_cap(
    call: Any, admin_key: str, verified: tuple[Tenant, str, str, dict[str, Any]]
) -> None:
    from moncore.ledger.jobs import run_job

    tenant, user_id, _, _ = verified
    account = new_account(call, tenant, user_id)
    fund(call, tenant, account, 6_000 * EUR)  # fine at tier_1 (25,000 EUR cap), above tier_0's 5,000 EUR
    expires_at = user(call, tenant, user_id)["kyc_expires_at"]
    before = datetime.fromisoformat(expires_at.replace("Z", "+00:00")) - timedelta(days=1)
    early = run_job("tier_enforcement", tenant.id, now=before.isoformat())["results"][0]
    assert (early["downgraded"], early["flagged"]) == ([], [])

    after = (datetime.fromisoformat(expires_at.replace("Z", "+00:00")) + timedelta(seconds=1)).isoformat()
    ran = run_job("tier_enforcement", tenant.id, now=after)["results"][0]
    assert ran["downgraded"] == [user_id]
    (flag,) = ran["flagged"]
    assert (flag["user_id"], flag["tier"], flag["exceeded"][0]["cap_minor"]) == (user_id, "tier_0", 5_000 * EUR)
    now_user = user(call, tenant, user_id)
    assert (now_user["tier"], now_user["kyc_status"]) == ("tier_0", "expired")
    (downgrade,) = audit(tenant, "user.tier_downgraded")
    assert json.loads(downgrade["payload"])["from"] == "tier_1" and downgrade["actor"] == "system:jobs"

    rerun = run_job("tier_enforcement", tenant.id, now=after)["results"][0]
    assert rerun["downgraded"] == [] and rerun["flagged"][0]["case_id"] == flag["case_id"]  # idempotent
    (case,) = cases_of(call, admin_key, tenant)
    assert (case["kind"], case["subject_user_id"]) == ("tier_limit_excess", user_id)
    assert len(audit(tenant, "job.tier_enforcement")) == 3
    assert balance(call, tenant, account)["posted_minor"] == 6_000 * EUR  # nothing moved


# ------------------------------------------------------------------------------------------------ counters
def test_rebuild_verify_recomputes_tier_limit_counters_and_catches_a_tampered_one(
    call: Any, verified: tuple[Tenant, str, str, dict[str, Any]]
) -> None:
    from moncore.ledger.rebuild import CounterDerivation, RebuildService

    tenant, user_id, _, _ = verified
    source = new_account(call, tenant, user_id)
    target = new_account(call, tenant, new_user(call, tenant)[0])
    fund(call, tenant, source, 3_000 * EUR)
    for amount in (1_200 * EUR, 300 * EUR):
        assert transfer(call, tenant, source, target, amount).status == 201
    service = RebuildService([CounterDerivation()])
    clean = service.run(tenant.id, "verify")
    assert clean.checked == {"counter": 2} and clean.mismatches == []

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"{tenant.id}#user#{user_id}#EUR#day#{day}"
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_COUNTERS_TABLE"])
    assert int(table.get_item(Key={"pk": key})["Item"]["total_minor"]) == 1_500 * EUR
    table.update_item(Key={"pk": key}, UpdateExpression="ADD total_minor :d", ExpressionAttributeValues={":d": -500})
    found = service.run(tenant.id, "verify")
    ((mismatch),) = found.mismatches
    assert (mismatch.kind, mismatch.key, mismatch.outcome) == ("counter", key, "reported")
    assert mismatch.expected is not None and mismatch.found is not None
    assert (mismatch.expected["total_minor"], mismatch.found["total_minor"]) == (1_500 * EUR, 1_500 * EUR - 500)
    assert mismatch.expected["version"] == 2
    restored = service.run(tenant.id, "restore")
    assert [m.outcome for m in restored.mismatches] == ["restored"]
    assert int(table.get_item(Key={"pk": key})["Item"]["total_minor"]) == 1_500 * EUR
    assert service.run(tenant.id, "verify").mismatches == []


def test_an_officer_may_only_lower_a_tier(
    call: Any, admin_key: str, verified: tuple[Tenant, str, str, dict[str, Any]]
) -> None:
    from infra.local_stack import create_admin_key

    tenant, user_id, _, _ = verified
    path = f"/admin/v1/users/{tenant.id}/{user_id}/tier"
    _, viewer = create_admin_key(name="kyc-viewer", role="viewer")
    assert call("POST", path, key=viewer, json={"tier": "tier_0", "reason": "r"}).status == 403
    assert call("POST", path, key=admin_key, json={"tier": "tier_2", "reason": "up"}).status == 422  # not a route up
    same = call("POST", path, key=admin_key, json={"tier": "tier_1", "reason": "no-op"})
    assert same.status == 409 and same.json()["code"] == "invalid_state_transition", same.json()
    lowered = call("POST", path, key=admin_key, json={"tier": "tier_0", "reason": "customer request"})
    assert lowered.status == 200 and lowered.json()["tier"] == "tier_0", lowered.json()
    (event,) = audit(tenant, "user.tier_downgraded")
    assert json.loads(event["payload"])["reason"] == "customer request" and event["actor"].startswith("key:")
    assert (
        call(
            "POST",
            f"/admin/v1/users/{tenant.id}/usr_nobody/tier",
            key=admin_key,
            json={"tier": "tier_0", "reason": "r"},
        ).status
        == 404
    )
