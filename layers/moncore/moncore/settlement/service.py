"""Settlement: per provider and value date, the settled items of the provider's clearing account become one signed
settlement record; where `settlement_finalization` is live its legs post, otherwise the record is kept in shadow
mode (docs/settlement.md). Driven by statemachines/settlement.asl.json: `plan` lists the batches, `settle` runs once
per batch (a Map iteration) and records one settlement per provider found in it, `summarize` audits the run.

Idempotent per (tenant, provider, purpose, currency, value date): the record is written once (attribute_not_exists)
and the settlement transaction's id derives from the record's id, so a rerun, a retried task or two concurrent runs
leave one record and at most one posting.

Errors: ValidationFailed (bad date), NotFound (unknown tenant); AWS errors propagate (the state machine retries).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.capabilities import Capability, allows
from moncore.domain.clock import now_rfc3339, utc_now
from moncore.domain.context import Caller, RequestIdentity
from moncore.domain.errors import NotFound
from moncore.domain.ids import derived_id
from moncore.domain.settlement import (
    SAFEGUARDING,
    SETTLED_PURPOSES,
    UNATTRIBUTED,
    SettlementBatch,
    SettlementPayload,
    net_settled,
)
from moncore.domain.snapshots import check_day
from moncore.domain.transactions import EventKind, Phase, TxnType, settled_pair
from moncore.ledger.service import create, first_event, new_transaction, system_account
from moncore.store import accounts as account_store
from moncore.store import audit as audit_store
from moncore.store import ledger as ledger_store
from moncore.store import settlements as settlement_store
from moncore.store import signing
from moncore.store import tenancy as tenancy_store
from moncore.store.models import SettlementItem
from moncore.store.tenancy import find_tenant_item
from moncore.tenancy.service import TenancyService

ACTOR = "system:settlement"


class SettlementService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    def plan(self, tenant_id: str | None, value_date: str | None) -> dict[str, Any]:
        """The batches of a run: every clearing account each tenant (one, or all) has, per currency; the value date
        defaults to the last closed UTC day (the daily schedule passes none)."""
        day = check_day(value_date) if value_date else (utc_now() - timedelta(days=1)).strftime("%Y-%m-%d")
        if tenant_id is not None and find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        batches = [
            SettlementBatch(tenant, day, item.purpose, item.currency).record()
            for tenant in ([tenant_id] if tenant_id else tenancy_store.tenant_ids())
            for item in account_store.tenant_accounts(tenant)
            if item.purpose in SETTLED_PURPOSES
        ]
        return {"date": day, "batches": sorted(batches, key=lambda b: (b["tenant_id"], b["purpose"], b["currency"]))}

    def settle(self, batch: SettlementBatch, *, correlation_id: str) -> dict[str, Any]:
        """Build, sign, (post) and record the batch's settlement with each provider that has items in it; a rerun
        answers the stored records."""
        live = allows(
            self._tenancy.tenant_config(batch.tenant_id).capabilities.get(
                Capability.SETTLEMENT_FINALIZATION, "disabled"
            )
        )
        caller = Caller(batch.tenant_id, ACTOR, "system", correlation_id)
        settled = [self._settle_one(caller, payload, live) for payload in self._payloads(batch)]
        return {**batch.record(), "settlements": settled}

    def _settle_one(self, caller: Caller, payload: SettlementPayload, live: bool) -> dict[str, Any]:
        key, batch = payload.key, payload.key.batch
        stored = settlement_store.find(batch.tenant_id, key.settlement_id)
        if stored is not None:
            return settlement_view(stored) | {"replayed": True}
        signature = signing.sign(payload.signed_bytes())
        posted = self._post(caller, payload) if live and payload.amount_minor != 0 else None
        item = SettlementItem(
            settlement_store.record_key(batch.tenant_id, key.settlement_id),
            settlement_id=key.settlement_id,
            tenant_id=batch.tenant_id,
            date_sk=f"{batch.value_date}#{key.settlement_id}",
            provider=key.provider,
            provider_reference=key.provider_reference,
            purpose=batch.purpose,
            currency=batch.currency,
            value_date=batch.value_date,
            amount_minor=payload.amount_minor,
            item_count=payload.item_count,
            document=payload.document(),
            payload_sha256=payload.payload_sha256,
            signature_b64=signature.signature_b64,
            key_id=signature.key_id,
            algorithm=signature.algorithm,
            mode="live" if live else "shadow",
            posted_txn_id=posted,
            created_at=now_rfc3339(),
            correlation_id=caller.correlation_id,
        )
        return settlement_view(settlement_store.record_once(item))

    def summarize(self, value_date: str, results: list[dict[str, Any]], correlation_id: str) -> dict[str, Any]:
        """Audit the run once per tenant it settled (what, how much per currency, in which modes)."""
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        settlements = [record for result in results for record in result["settlements"]]
        for record in settlements:
            by_tenant.setdefault(record["tenant_id"], []).append(record)
        for tenant_id, settled in sorted(by_tenant.items()):
            audit_store.append(
                audit_event(
                    tenant_id=tenant_id,
                    action="settlement.run",
                    actor=ACTOR,
                    correlation_id=correlation_id,
                    subject_id=value_date,
                    payload={
                        "value_date": value_date,
                        "settlements": [r["settlement_id"] for r in settled],
                        "total_minor_by_currency": _totals(settled),
                        "modes": sorted({r["mode"] for r in settled}),
                    },
                )
            )
        return {"date": value_date, "tenants": len(by_tenant), "settlements": len(settlements)}

    def for_date(self, tenant_id: str, value_date: str) -> list[dict[str, Any]]:
        return [settlement_view(item) for item in settlement_store.for_date(tenant_id, value_date)]

    # ---------------------------------------------------------------- internals
    def _payloads(self, batch: SettlementBatch) -> list[SettlementPayload]:
        """The clearing account's SETTLED legs recorded during the value date (UTC), settlements excluded, grouped
        by the provider each leg names."""
        account_id = system_account(batch.tenant_id, batch.purpose, batch.currency).account_id
        since, upto = f"{batch.value_date}T00:00:00.000000Z", f"{batch.value_date}T23:59:59.999999Z"
        amounts: dict[str, list[int]] = {}
        txn_ids: dict[str, set[str]] = {}
        for entry in ledger_store.account_entries(batch.tenant_id, account_id, since=since, upto=upto):
            if entry.phase == Phase.SETTLED.value and entry.txn_type != TxnType.SETTLEMENT.value:
                provider = entry.provider or UNATTRIBUTED
                amounts.setdefault(provider, []).append(entry.amount_minor)
                txn_ids.setdefault(provider, set()).add(entry.txn_id)
        return [
            SettlementPayload(batch.of(provider), net_settled(amounts[provider]), len(ids), tuple(sorted(ids)))
            for provider, ids in sorted(txn_ids.items())
        ]

    def _post(self, caller: Caller, payload: SettlementPayload) -> str:
        """Move the day's net from the clearing account to the safeguarding mirror (or back, when negative)."""
        key, batch = payload.key, payload.key.batch
        clearing = system_account(batch.tenant_id, batch.purpose, batch.currency)
        bank = system_account(batch.tenant_id, SAFEGUARDING, batch.currency)
        amount = abs(payload.amount_minor)
        legs = (
            settled_pair(bank, clearing, amount) if payload.amount_minor > 0 else settled_pair(clearing, bank, amount)
        )
        request = RequestIdentity(f"settlement:{key.settlement_id}", payload.payload_sha256, {})
        txn = new_transaction(
            caller,
            request,
            derived_id("txn", batch.tenant_id, request.idempotency_key),
            TxnType.SETTLEMENT,
            amount,
            batch.currency,
            gate={"capability": Capability.SETTLEMENT_FINALIZATION.value, "mode": "live"},
            reference=key.provider_reference,
            provider=key.provider,
            provider_ref=key.provider_reference,
        )
        event = first_event(caller, request, txn, EventKind.SETTLED, legs)
        result = create(caller, request, txn, event, guards=(f"settlement#{key.provider_reference}",))
        return str(result.body["id"])


def settlement_view(item: SettlementItem) -> dict[str, Any]:
    return {
        "settlement_id": item.settlement_id,
        "tenant_id": item.tenant_id,
        "provider": item.provider,
        "provider_reference": item.provider_reference,
        "purpose": item.purpose,
        "currency": item.currency,
        "value_date": item.value_date,
        "amount_minor": int(item.amount_minor),
        "item_count": int(item.item_count),
        "document": item.document,
        "payload_sha256": item.payload_sha256,
        "signature": {"key_id": item.key_id, "algorithm": item.algorithm, "value_b64": item.signature_b64},
        "mode": item.mode,
        "posted_txn_id": item.posted_txn_id,
        "created_at": item.created_at,
    }


def _totals(results: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for result in results:
        totals[result["currency"]] = totals.get(result["currency"], 0) + int(result["amount_minor"])
    return dict(sorted(totals.items()))
