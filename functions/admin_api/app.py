"""Admin plane /admin/v1 (admin keys with roles). One route, one kernel call."""

from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.domain.context import Result
from moncore.http.resolver import admin_caller, handle, idempotent, make_app
from moncore.http.schemas import CreateTenant, Empty, Id
from moncore.tenancy.keys import IssuedKey
from moncore.tenancy.service import TenancyService

logger = Logger()
app = make_app(logger)
tenancy = TenancyService()
app.configure_openapi(title="MonCore admin API", version="1.0.0", description="Admin plane: tenants and API keys.")

PathId = Annotated[Id, Path()]
MANAGERS = ("admin", "operator")


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


@app.post("/admin/v1/tenants/<tenant_id>/api-keys")
def create_api_key(tenant_id: PathId, body: Empty) -> Response[str]:
    who = admin_caller(app, *MANAGERS)
    return idempotent(app, who, lambda _: _issued(tenant_id, tenancy.issue_tenant_key(who, tenant_id)))


@app.post("/admin/v1/tenants/<tenant_id>/api-keys/<key_id>/revoke")
def revoke_api_key(tenant_id: PathId, key_id: PathId) -> dict[str, Any]:
    return tenancy.revoke_tenant_key(admin_caller(app, *MANAGERS), tenant_id, key_id)


def _issued(tenant_id: str, issued: IssuedKey) -> Result:
    body = {"key_id": issued.key_id, "api_key": issued.api_key, "tenant_id": tenant_id}
    # A replay must not show the secret again (it is stored nowhere): it answers the key id only.
    return Result(
        body, replay_body=body | {"api_key": None, "note": "The secret is shown once; only its keyed hash is stored."}
    )


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, logger, event, context)
