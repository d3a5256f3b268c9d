"""Admin plane /admin/v1 (admin keys with roles). One route, one kernel call."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.audit.exports import ADMIN, ExportService
from moncore.compliance import aml
from moncore.compliance.cases import CaseService
from moncore.compliance.freezes import FreezeService
from moncore.compliance.kyc import KycService
from moncore.compliance.screening.watchlists import WatchlistService
from moncore.domain.cases import CASE_WORKERS
from moncore.domain.context import Result
from moncore.http.resolver import admin_caller, handle, idempotent, make_app
from moncore.http.schemas import (
    AddWatchlistEntry,
    AssignCase,
    CaseNote,
    ChangeCapability,
    ChangeTenantConfig,
    CreateEvidenceBundle,
    CreateTenant,
    DecideCase,
    Decision,
    DowngradeTier,
    Empty,
    EscalateCase,
    Id,
    OpenCase,
    ProposeAdjustment,
    StartReconciliation,
    StatusReason,
)
from moncore.ledger.card_events import CardEventReceiver
from moncore.ledger.open_banking import OpenBankingService
from moncore.providers import registry
from moncore.providers.replay import Receiver, WebhookEvents
from moncore.reconciliation.adjustments import AdjustmentService
from moncore.reconciliation.service import ReconciliationService
from moncore.tenancy.capabilities import CapabilityService
from moncore.tenancy.keys import IssuedKey
from moncore.tenancy.service import TenancyService

logger = Logger()
app = make_app(logger)
tenancy = TenancyService()
cases = CaseService()
capabilities = CapabilityService(tenancy)
freezes = FreezeService()
kyc = KycService(tenancy, cases)
watchlists = WatchlistService()
exports = ExportService()
reconciliations = ReconciliationService(tenancy)
adjustments = AdjustmentService()
# Operator replays run a stored delivery through its domain's receiver, as functions/webhooks/app.py RECEIVERS
# would: one line per domain, like there.
REPLAY_RECEIVERS: dict[str, Receiver] = {
    registry.KYC: kyc.receive_webhook,
    registry.CARDS: CardEventReceiver().receive_webhook,
    registry.OPEN_BANKING: OpenBankingService(tenancy).receive_webhook,
}
webhook_events = WebhookEvents(REPLAY_RECEIVERS)
app.configure_openapi(
    title="MonCore admin API",
    version="1.0.0",
    description="Admin plane: tenants, API keys, capabilities (four-eyes), freezes, cases, screening watchlists, "
    "reconciliations (runs, exceptions, four-eyes adjustments).",
)

PathId = Annotated[Id, Path()]
MANAGERS = ("admin", "operator")
APPROVERS = ("admin",)  # a change to live: requested by a manager, approved by another admin (four-eyes)
FREEZERS = ("compliance_officer", "operator", "admin")
UNFREEZERS = ("compliance_officer", "admin")  # lifting a freeze is a compliance decision, not an operation
WATCHLIST_KEEPERS = ("compliance_officer", "admin")  # tenants' sanctions watchlists are compliance data
BUNDLE_MAKERS = ("compliance_officer", "operator", "admin")  # regulator evidence bundles (any admin role reads them)


@app.get("/admin/v1/openapi.json")
def openapi() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=app.get_openapi_json_schema())


@app.post("/admin/v1/tenants")
def create_tenant(body: CreateTenant) -> Response[str]:
    who = admin_caller(app, *MANAGERS)
    return idempotent(app, who, lambda _: Result(tenancy.create_tenant(who, **body.model_dump()).to_dict()))


@app.get("/admin/v1/tenants/<tenant_id>")
def get_tenant(tenant_id: PathId) -> dict[str, Any]:
    admin_caller(app)
    return tenancy.get_tenant(tenant_id).to_dict()


@app.patch("/admin/v1/tenants/<tenant_id>/config")
def change_tenant_config(tenant_id: PathId, body: ChangeTenantConfig) -> dict[str, Any]:
    """Tier limit overrides and jurisdictions (role admin), validated like at creation and audited; naturally
    idempotent (the same change again changes nothing), so no Idempotency-Key."""
    who = admin_caller(app, "admin")
    return tenancy.change_config(who, tenant_id, **body.model_dump(exclude_unset=True))


@app.post("/admin/v1/tenants/<tenant_id>/api-keys")
def create_api_key(tenant_id: PathId, body: Empty) -> Response[str]:
    who = admin_caller(app, *MANAGERS)
    return idempotent(app, who, lambda _: _issued(tenant_id, tenancy.issue_tenant_key(who, tenant_id)))


@app.post("/admin/v1/tenants/<tenant_id>/api-keys/<key_id>/revoke")
def revoke_api_key(tenant_id: PathId, key_id: PathId) -> dict[str, Any]:
    return tenancy.revoke_tenant_key(admin_caller(app, *MANAGERS), tenant_id, key_id)


@app.post("/admin/v1/cases")
def open_case(body: OpenCase) -> Response[str]:
    who = admin_caller(app, *CASE_WORKERS)
    return idempotent(app, who, lambda req: cases.open_case(who, req, **body.model_dump()))


@app.get("/admin/v1/cases")
def list_cases(
    tenant_id: Annotated[Id, Query()],
    status: Annotated[Literal["OPEN", "IN_REVIEW", "ESCALATED", "CLOSED"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    admin_caller(app)
    return cases.list_cases(tenant_id, status=status, limit=limit, cursor=cursor)


@app.get("/admin/v1/aml-events")
def list_aml_events(
    tenant_id: Annotated[Id, Query()],
    subject_id: Annotated[Id | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    admin_caller(app, *CASE_WORKERS)
    if subject_id is not None:
        return {"items": aml.events_of(tenant_id, subject_id), "next_cursor": None}
    return aml.list_events(tenant_id, limit=limit, cursor=cursor)


EventKey = Annotated[str, Path(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_\-]+$")]
REPLAYERS = ("operator", "admin")


@app.get("/admin/v1/webhook-events")
def list_webhook_events(
    provider: Annotated[Id, Query()],
    status: Annotated[Literal["RECEIVED", "PROCESSED", "IGNORED", "UNMATCHED", "REJECTED"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """A provider's stored deliveries (accepted and rejected), newest first; filtered pages may be short."""
    admin_caller(app)
    return webhook_events.list_events(provider=provider, status=status, limit=limit, cursor=cursor)


@app.get("/admin/v1/webhook-events/<event_key>")
def get_webhook_event(event_key: EventKey) -> dict[str, Any]:
    admin_caller(app)
    return webhook_events.get_event(event_key)


@app.post("/admin/v1/webhook-events/<event_key>/replay")
def replay_webhook_event(event_key: EventKey) -> dict[str, Any]:
    """Re-run a stored delivery through its receiver without the 5-minute tolerance (its HMAC is checked again);
    idempotent: an event processed before changes nothing. Audited (`webhook_event.replayed`)."""
    return webhook_events.replay(admin_caller(app, *REPLAYERS), event_key)


@app.get("/admin/v1/cases/<case_id>")
def get_case(case_id: PathId) -> dict[str, Any]:
    admin_caller(app)
    return cases.get_case(case_id)


@app.post("/admin/v1/cases/<case_id>/assign")
def assign_case(case_id: PathId, body: AssignCase) -> Response[str]:
    who = admin_caller(app)
    return idempotent(app, who, lambda _: cases.assign(who, case_id, body.assignee), status=200)


@app.post("/admin/v1/cases/<case_id>/notes")
def note_case(case_id: PathId, body: CaseNote) -> Response[str]:
    who = admin_caller(app)
    return idempotent(app, who, lambda _: cases.add_note(who, case_id, body.text))


@app.post("/admin/v1/cases/<case_id>/escalate")
def escalate_case(case_id: PathId, body: EscalateCase) -> Response[str]:
    who = admin_caller(app)
    return idempotent(app, who, lambda _: cases.escalate(who, case_id, body.reason), status=200)


@app.post("/admin/v1/cases/<case_id>/decisions")
def decide_case(case_id: PathId, body: DecideCase) -> Response[str]:
    who = admin_caller(app)
    return idempotent(app, who, lambda req: cases.decide(who, req, case_id, **body.model_dump()), status=200)


@app.post("/admin/v1/tenants/<tenant_id>/capabilities")
def change_capability(tenant_id: PathId, body: ChangeCapability) -> Response[str]:
    """disabled/shadow: applied now (200). live: a PENDING request (202) until another admin approves it."""
    who = admin_caller(app, *MANAGERS)
    status = 202 if body.mode == "live" else 200
    return idempotent(app, who, lambda _: capabilities.change(who, tenant_id, **body.model_dump()), status=status)


@app.get("/admin/v1/tenants/<tenant_id>/capability-requests")
def list_capability_requests(
    tenant_id: PathId,
    status: Annotated[Literal["PENDING", "APPROVED", "REJECTED", "EXPIRED"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    admin_caller(app)
    return capabilities.list_requests(tenant_id, status=status, limit=limit, cursor=cursor)


@app.get("/admin/v1/tenants/<tenant_id>/capability-requests/<request_id>")
def get_capability_request(tenant_id: PathId, request_id: PathId) -> dict[str, Any]:
    admin_caller(app)
    return capabilities.get_request(tenant_id, request_id)


@app.post("/admin/v1/tenants/<tenant_id>/capability-requests/<request_id>/approve")
def approve_capability_request(tenant_id: PathId, request_id: PathId, body: Decision) -> dict[str, Any]:
    return capabilities.approve(admin_caller(app, *APPROVERS), tenant_id, request_id, reason=body.reason)


@app.post("/admin/v1/tenants/<tenant_id>/capability-requests/<request_id>/reject")
def reject_capability_request(tenant_id: PathId, request_id: PathId, body: Decision) -> dict[str, Any]:
    return capabilities.reject(admin_caller(app, *MANAGERS), tenant_id, request_id, reason=body.reason)


@app.post("/admin/v1/tenants/<tenant_id>/watchlist")
def add_watchlist_entry(tenant_id: PathId, body: AddWatchlistEntry) -> Response[str]:
    who = admin_caller(app, *WATCHLIST_KEEPERS)
    return idempotent(app, who, lambda req: watchlists.add_entry(who, req, tenant_id, **body.model_dump()))


@app.get("/admin/v1/tenants/<tenant_id>/watchlist")
def list_watchlist(tenant_id: PathId, include_inactive: Annotated[bool, Query()] = False) -> dict[str, Any]:
    admin_caller(app, *WATCHLIST_KEEPERS)
    return watchlists.list_entries(tenant_id, include_inactive=include_inactive)


@app.post("/admin/v1/tenants/<tenant_id>/watchlist/<entry_id>/deactivate")
def deactivate_watchlist_entry(tenant_id: PathId, entry_id: PathId, body: StatusReason) -> dict[str, Any]:
    return watchlists.deactivate(admin_caller(app, *WATCHLIST_KEEPERS), tenant_id, entry_id, reason=body.reason)


@app.post("/admin/v1/users/<tenant_id>/<user_id>/tier")
def downgrade_tier(tenant_id: PathId, user_id: PathId, body: DowngradeTier) -> dict[str, Any]:
    """Lower a user's tier, audited; 409 if it is not lower than the current one (docs/kyc.md)."""
    return kyc.downgrade(admin_caller(app, *CASE_WORKERS), tenant_id, user_id, tier=body.tier, reason=body.reason)


@app.post("/admin/v1/users/<tenant_id>/<user_id>/freeze")
def freeze_user(tenant_id: PathId, user_id: PathId, body: StatusReason) -> dict[str, Any]:
    return freezes.freeze_user(admin_caller(app, *FREEZERS), tenant_id, user_id, reason=body.reason)


@app.post("/admin/v1/users/<tenant_id>/<user_id>/unfreeze")
def unfreeze_user(tenant_id: PathId, user_id: PathId, body: StatusReason) -> dict[str, Any]:
    return freezes.unfreeze_user(admin_caller(app, *UNFREEZERS), tenant_id, user_id, reason=body.reason)


@app.post("/admin/v1/accounts/<tenant_id>/<account_id>/freeze")
def freeze_account(tenant_id: PathId, account_id: PathId, body: StatusReason) -> dict[str, Any]:
    return freezes.freeze_account(admin_caller(app, *FREEZERS), tenant_id, account_id, reason=body.reason)


@app.post("/admin/v1/accounts/<tenant_id>/<account_id>/unfreeze")
def unfreeze_account(tenant_id: PathId, account_id: PathId, body: StatusReason) -> dict[str, Any]:
    return freezes.unfreeze_account(admin_caller(app, *UNFREEZERS), tenant_id, account_id, reason=body.reason)


@app.post("/admin/v1/reconciliations")
def start_reconciliation(body: StartReconciliation) -> Response[str]:
    """202 {id, status, attempt}: the run of (tenant, provider, date) started, or the existing one when it is running
    or completed (idempotent per day; a FAILED run starts its next attempt). docs/reconciliation.md."""
    who = admin_caller(app, *MANAGERS)
    return idempotent(
        app,
        who,
        lambda _: reconciliations.start(
            who,
            tenant_id=body.tenant_id,
            provider=body.provider,
            day=body.date,
            statement_s3_key=body.statement_s3_key,
        ),
        status=202,
    )


@app.get("/admin/v1/reconciliations/<run_id>")
def get_reconciliation(
    run_id: PathId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The run: status, counts per result, balance check, report keys with SHA-256, error; a page of exceptions."""
    admin_caller(app)
    return reconciliations.get_run(run_id, limit=limit, cursor=cursor)


@app.post("/admin/v1/reconciliations/<run_id>/exceptions/<exception_id>/adjustments")
def propose_adjustment(run_id: PathId, exception_id: PathId, body: ProposeAdjustment) -> Response[str]:
    """201: an adjustment of an open exception, proposed; it posts when another admin approves it."""
    who = admin_caller(app, *MANAGERS)
    return idempotent(app, who, lambda _: adjustments.propose(who, run_id, exception_id, reason=body.reason))


@app.post("/admin/v1/reconciliations/<run_id>/adjustments/<adjustment_id>/approve")
def approve_adjustment(run_id: PathId, adjustment_id: PathId, body: Empty) -> dict[str, Any]:
    """Another admin than the proposer (403 four_eyes_required otherwise) posts the adjustment, once."""
    return adjustments.approve(admin_caller(app, *APPROVERS), run_id, adjustment_id)


@app.post("/admin/v1/reconciliations/<run_id>/adjustments/<adjustment_id>/reject")
def reject_adjustment(run_id: PathId, adjustment_id: PathId, body: Decision) -> dict[str, Any]:
    """Withdraw a proposed adjustment (nothing posts); its exception is open again."""
    return adjustments.reject(admin_caller(app, *MANAGERS), run_id, adjustment_id, reason=body.reason)


@app.post("/admin/v1/evidence-bundles")
def create_evidence_bundle(body: CreateEvidenceBundle) -> Response[str]:
    """202 {id, status}: a regulator evidence bundle of the tenant's records of `kinds` over [from, to), built
    asynchronously (docs/audit.md, "Exports and evidence bundles"); the operator is named in its signed manifest."""
    who = admin_caller(app, *BUNDLE_MAKERS)
    return idempotent(
        app,
        who,
        lambda req: exports.request(
            who,
            req,
            origin=ADMIN,
            tenant_id=body.tenant_id,
            kinds=body.kinds,
            scope_from=body.from_,
            scope_to=body.to,
        ),
        status=202,
    )


@app.get("/admin/v1/evidence-bundles/<bundle_id>")
def get_evidence_bundle(bundle_id: PathId) -> dict[str, Any]:
    """{status, progress, manifest, download_url, ...} of a bundle made on the admin plane (partner exports are 404)."""
    admin_caller(app)
    return exports.get(bundle_id, origin=ADMIN)


def _issued(tenant_id: str, issued: IssuedKey) -> Result:
    body = {"key_id": issued.key_id, "api_key": issued.api_key, "tenant_id": tenant_id}
    # A replay must not show the secret again (it is stored nowhere): it answers the key id only.
    return Result(
        body, replay_body=body | {"api_key": None, "note": "The secret is shown once; only its keyed hash is stored."}
    )


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, logger, event, context)
