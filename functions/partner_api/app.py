"""Partner plane /v1 (tenant keys). One route, one kernel call; errors map to problem+json in moncore.http.resolver."""

from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.audit import sealing
from moncore.audit.exports import PARTNER, ExportService
from moncore.compliance.kyc import KycService
from moncore.compliance.screening.service import ScreeningService
from moncore.domain.cards import CardAction
from moncore.domain.clock import parse_instant
from moncore.http.resolver import handle, idempotent, make_app, tenant_caller
from moncore.http.schemas import (
    Capture,
    CardStatusChange,
    CreateAccount,
    CreateConversion,
    CreateExport,
    CreateFunding,
    CreateFxQuote,
    CreateQrPayment,
    CreateTransfer,
    CreateUser,
    CreateWithdrawal,
    Id,
    IssueCard,
    PayQrPayment,
    Reverse,
    ScreeningCheck,
    StartKycCheck,
    Void,
)
from moncore.ledger.cards import CardService
from moncore.ledger.exposure import tenant_exposure, user_exposure
from moncore.ledger.fx import FxService
from moncore.ledger.lifecycle import LifecycleService
from moncore.ledger.qr import QrService
from moncore.ledger.service import LedgerService
from moncore.ledger.withdrawals import WithdrawalService

logger = Logger()
app = make_app(logger)
ledger = LedgerService()
lifecycle = LifecycleService()
fx = FxService()
qr = QrService()
screening = ScreeningService()
kyc = KycService()
withdrawals = WithdrawalService()
cards = CardService()
exports = ExportService()
app.configure_openapi(
    title="MonCore partner API",
    version="1.0.0",
    description="Partner plane: users, accounts, fundings, transfers, FX quotes and conversions, QR payments, "
    "transactions.",
)

PathId = Annotated[Id, Path()]
AsOf = Annotated[str | None, Query(max_length=40, description="RFC 3339 instant: the state recorded by then")]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/openapi.json")
def openapi() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=app.get_openapi_json_schema())


@app.post("/v1/users")
def create_user(body: CreateUser) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: ledger.create_user(who, req, **body.model_dump()))


@app.get("/v1/users/<user_id>")
def get_user(user_id: PathId) -> dict[str, Any]:
    return ledger.get_user(tenant_caller(app), user_id)


@app.post("/v1/users/<user_id>/kyc-checks")
def start_kyc_check(user_id: PathId, body: StartKycCheck) -> Response[str]:
    """202: the check is pending at the provider; its result arrives by webhook and the kernel decides the tier."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: kyc.start_check(who, req, user_id, level=body.level), status=202)


@app.get("/v1/users/<user_id>/kyc-checks/<check_id>")
def get_kyc_check(user_id: PathId, check_id: PathId) -> dict[str, Any]:
    return kyc.get_check(tenant_caller(app), user_id, check_id)


@app.post("/v1/accounts")
def create_account(body: CreateAccount) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: ledger.create_account(who, req, **body.model_dump()))


@app.get("/v1/accounts/<account_id>")
def get_account(account_id: PathId, as_of: AsOf = None) -> dict[str, Any]:
    instant = None if as_of is None else parse_instant(as_of)
    return ledger.get_account(tenant_caller(app), account_id, as_of=instant)


@app.get("/v1/accounts/<account_id>/entries")
def list_entries(
    account_id: PathId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    as_of: AsOf = None,
) -> dict[str, Any]:
    instant = None if as_of is None else parse_instant(as_of)
    return ledger.list_entries(tenant_caller(app), account_id, limit=limit, cursor=cursor, as_of=instant)


@app.post("/v1/fundings")
def create_funding(body: CreateFunding) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: ledger.fund(who, req, **body.model_dump()))


@app.post("/v1/withdrawals")
def create_withdrawal(body: CreateWithdrawal) -> Response[str]:
    """201 AUTHORIZED: the funds are held and the payout was handed to the tenant's open banking provider (or held
    for a compliance case); its webhook settles it (SETTLED) or fails it (REVERSED, funds back). 403
    capability_disabled until the tenant's issuer onboarding made `withdrawals` live."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: withdrawals.withdraw(who, req, **body.model_dump()))


@app.post("/v1/transfers")
def create_transfer(body: CreateTransfer) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: ledger.transfer(who, req, **body.model_dump()))


@app.post("/v1/fx/conversions")
def create_fx_conversion(body: CreateConversion) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: fx.convert(who, req, **body.model_dump()))


@app.post("/v1/fx/quotes")
def create_fx_quote(body: CreateFxQuote) -> Response[str]:
    """201: a firm quote from the tenant's FX provider; POST /v1/fx/conversions executes it once before it expires."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: fx.quote(who, req, **body.model_dump()))


@app.get("/v1/fx/quotes/<quote_id>")
def get_fx_quote(quote_id: PathId) -> dict[str, Any]:
    return fx.get_quote(tenant_caller(app), quote_id)


@app.post("/v1/qr-payments")
def create_qr_payment(body: CreateQrPayment) -> Response[str]:
    """201: a merchant's payment request with its EMVCo merchant-presented payload (status OPEN)."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: qr.create(who, req, **body.model_dump()))


@app.post("/v1/qr-payments/pay")
def pay_qr_payment(body: PayQrPayment) -> Response[str]:
    """201: the transaction (type qr_payment) paying the request, once, before it expires."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: qr.pay(who, req, **body.model_dump()))


@app.get("/v1/qr-payments/<qr_payment_id>")
def get_qr_payment(qr_payment_id: PathId) -> dict[str, Any]:
    return qr.get(tenant_caller(app), qr_payment_id)


@app.post("/v1/cards")
def issue_card(body: IssueCard) -> Response[str]:
    """201: a card issued by the tenant's card issuer (capability card_issuing; 403 capability_disabled before)."""
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: cards.issue_card(who, req, **body.model_dump()))


@app.get("/v1/cards/<card_id>")
def get_card(card_id: PathId) -> dict[str, Any]:
    return cards.get_card(tenant_caller(app), card_id)


@app.post("/v1/cards/<card_id>/freeze")
def freeze_card(card_id: PathId, body: CardStatusChange) -> dict[str, Any]:
    """200: frozen (its authorisations are declined); asking again is 200 too. 503 if the issuer was not told."""
    return cards.change_status(tenant_caller(app), card_id, CardAction.FREEZE, reason=body.reason)


@app.post("/v1/cards/<card_id>/unfreeze")
def unfreeze_card(card_id: PathId, body: CardStatusChange) -> dict[str, Any]:
    return cards.change_status(tenant_caller(app), card_id, CardAction.UNFREEZE, reason=body.reason)


@app.post("/v1/cards/<card_id>/close")
def close_card(card_id: PathId, body: CardStatusChange) -> dict[str, Any]:
    """200: closed for good (409 on a later freeze or unfreeze)."""
    return cards.change_status(tenant_caller(app), card_id, CardAction.CLOSE, reason=body.reason)


@app.post("/v1/transactions/<txn_id>/capture")
def capture(txn_id: PathId, body: Capture) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: lifecycle.capture(who, req, txn_id, **body.model_dump()), status=200)


@app.post("/v1/transactions/<txn_id>/void")
def void(txn_id: PathId, body: Void) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: lifecycle.void(who, req, txn_id, **body.model_dump()), status=200)


@app.post("/v1/transactions/<txn_id>/reverse")
def reverse(txn_id: PathId, body: Reverse) -> Response[str]:
    who = tenant_caller(app)
    return idempotent(app, who, lambda req: lifecycle.reverse(who, req, txn_id, **body.model_dump()))


@app.get("/v1/users/<user_id>/exposure")
def get_user_exposure(user_id: PathId) -> dict[str, Any]:
    return user_exposure(tenant_caller(app).require_tenant(), user_id)


@app.get("/v1/tenant/exposure")
def get_exposure() -> dict[str, Any]:
    return tenant_exposure(tenant_caller(app).require_tenant())


@app.post("/v1/screening/checks")
def screening_check(body: ScreeningCheck) -> dict[str, Any]:
    """Screens a name; creates nothing, so no Idempotency-Key (each check is audited). 200 {matches: [...]}."""
    return screening.check(tenant_caller(app), **body.model_dump())


@app.get("/v1/transactions/<txn_id>")
def get_transaction(txn_id: PathId) -> dict[str, Any]:
    return ledger.get_transaction(tenant_caller(app), txn_id)


@app.get("/v1/transactions/<txn_id>/proof")
def get_transaction_proof(txn_id: PathId) -> dict[str, Any]:
    """Each leg as stored, its SHA-256, its Merkle inclusion proof and the signed block that seals it (docs/audit.md);
    409 `not_sealed` until the seal job has sealed every leg."""
    return sealing.transaction_proof(tenant_caller(app).require_tenant(), txn_id)


@app.post("/v1/exports")
def create_export(body: CreateExport) -> Response[str]:
    """202 {id, status}: the export is built asynchronously into a signed evidence bundle (docs/audit.md, "Exports and
    evidence bundles"); GET /v1/exports/{id} shows its progress, then its manifest and a download URL."""
    who = tenant_caller(app)
    return idempotent(
        app,
        who,
        lambda req: exports.request(
            who,
            req,
            origin=PARTNER,
            tenant_id=who.require_tenant(),
            kinds=[body.kind],
            scope_from=body.from_,
            scope_to=body.to,
        ),
        status=202,
    )


@app.get("/v1/exports/<export_id>")
def get_export(export_id: PathId) -> dict[str, Any]:
    """{status, progress, manifest, download_url, ...}; another tenant's export (or a regulator bundle) is 404."""
    return exports.get(export_id, origin=PARTNER, tenant_id=tenant_caller(app).require_tenant())


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, logger, event, context)
