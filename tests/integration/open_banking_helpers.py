"""Helpers of the open banking and withdrawal tests: tenants on the asynchronous sandbox adapter, users whose
external_ref picks the sandbox scenario (`ob_<scenario>`), and webhook deliveries signed like the provider signs
them (the secret is put in WebhookSigningSecrets, as an operator does for a provider)."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from tests.integration.helpers import Tenant, idem, new_account, new_tenant, table_items

SANDBOX = "sandbox_open_banking"
MINIMAL = "minimal_bank"


def provider_secret(provider: str) -> str:
    """The provider's newest webhook secret, created (and kept for the session) if it has none yet."""
    client = boto3.client("secretsmanager")
    secret_id = os.environ["MONCORE_WEBHOOK_SECRETS"]
    doc = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    value = doc.get(provider)
    if value is None:
        value = doc[provider] = secrets.token_hex(24)
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(doc))
    return str(value if isinstance(value, str) else value[0])


def deliver(
    call: Any,
    provider: str,
    body: dict[str, Any] | bytes,
    *,
    signed_ago_s: int = 0,
    secret: str | None = None,
    correlation_id: str | None = None,
) -> Any:
    """POST a webhook as the provider does: raw JSON bytes, MonCore-Signature over "t.body", no API key."""
    from moncore.domain.webhooks import signature_header

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = signature_header(secret or provider_secret(provider), int(time.time()) - signed_ago_s, raw)
    headers = {"MonCore-Signature": header, "Content-Type": "application/json"}
    if correlation_id:
        headers["X-Correlation-Id"] = correlation_id
    return call("POST", f"/webhooks/{provider}", headers=headers, data=raw)


def use_provider(call: Any, admin_key: str, tenant: Tenant, provider: str) -> None:
    """Select the tenant's open banking adapter by configuration (the only switch there is)."""
    changed = call(
        "PATCH", f"/admin/v1/tenants/{tenant.id}/config", key=admin_key, json={"open_banking_provider": provider}
    )
    assert changed.status == 200 and changed.json()["open_banking_provider"] == provider, changed.json()


def async_tenant(call: Any, admin_key: str, name: str = "Open banking", **body: Any) -> Tenant:
    tenant = new_tenant(call, admin_key, name) if not body else _tenant_with(call, admin_key, name, body)
    use_provider(call, admin_key, tenant, SANDBOX)
    return tenant


def _tenant_with(call: Any, admin_key: str, name: str, body: dict[str, Any]) -> Tenant:
    made = call(
        "POST", "/admin/v1/tenants", key=admin_key, json={"name": name, "jurisdictions": ["FR"]} | body, headers=idem()
    )
    assert made.status == 201, made.json()
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    assert issued.status == 201, issued.json()
    return Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])


def holder(call: Any, tenant: Tenant, scenario: str = "", name: str = "Ada Lovelace") -> tuple[str, str, str]:
    """(user id, external_ref, EUR account id); `scenario` is the sandbox's (ob_<scenario> in the external_ref)."""
    external_ref = f"u-{uuid.uuid4().hex[:12]}" + (f"+ob_{scenario}" if scenario else "")
    made = call(
        "POST",
        "/v1/users",
        key=tenant.key,
        headers=idem(),
        json={"external_ref": external_ref, "full_name": name, "country": "FR"},
    )
    assert made.status == 201, made.json()
    return made.json()["id"], external_ref, new_account(call, tenant, made.json()["id"])


def outbox(kind: str, tenant: Tenant, txn: dict[str, Any], external_ref: str) -> list[Any]:
    """What the sandbox provider sends about this transaction (moncore.providers.open_banking.SandboxOpenBanking)."""
    from moncore.providers.open_banking import SANDBOX as ADAPTER
    from moncore.providers.open_banking import Kind

    return ADAPTER.outbox(
        Kind(kind),
        tenant_id=tenant.id,
        txn_id=txn["id"],
        amount_minor=txn["amount_minor"],
        currency=txn["currency"],
        payer_ref=external_ref,
    )


def transaction(call: Any, tenant: Tenant, txn_id: str) -> dict[str, Any]:
    got = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key)
    assert got.status == 200, got.json()
    return dict(got.json())


def audits(tenant_id: str, action: str) -> list[dict[str, Any]]:
    """The tenant's audit events of `action` from today's (and yesterday's) partitions, oldest first, payload
    parsed: a Query per day, not a Scan of the whole trail."""
    from boto3.dynamodb.conditions import Attr, Key

    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_AUDIT_TABLE"])
    today = datetime.now(UTC)
    found: list[dict[str, Any]] = []
    for day in sorted({(today - timedelta(days=1)).date().isoformat(), today.date().isoformat()}):
        page = table.query(
            KeyConditionExpression=Key("pk").eq(f"{tenant_id}#{day}"),
            FilterExpression=Attr("action").eq(action),
            ConsistentRead=True,
        )
        found.extend(item | {"payload": json.loads(str(item["payload"]))} for item in page["Items"])
    return found


def guard(tenant_id: str, name: str) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_GUARDS_TABLE"])
    return table.get_item(Key={"pk": f"{tenant_id}#{name}"}, ConsistentRead=True).get("Item")


def txn_items(tenant_id: str, txn_id: str) -> list[dict[str, Any]]:
    """Every ledger item (header, events, legs) of one transaction, read raw."""
    from boto3.dynamodb.conditions import Key

    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_LEDGER_TABLE"])
    return list(table.query(KeyConditionExpression=Key("pk").eq(f"{tenant_id}#{txn_id}"), ConsistentRead=True)["Items"])


def inbox_items(provider: str) -> list[dict[str, Any]]:
    return [i for i in table_items("MONCORE_WEBHOOK_EVENTS_TABLE") if i.get("provider") == provider]
