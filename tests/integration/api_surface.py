"""The API's surface, generated so a new endpoint cannot be forgotten by the tests that walk it.

- `ROUTES`: every route API Gateway serves, read from template.yaml exactly as the local gateway reads it.
- `resolver_operations`: every operation the HTTP functions' resolvers define (their OpenAPI documents, the same the
  partner and admin planes publish at /v1/openapi.json and /admin/v1/openapi.json).
- `World`: real resources of one tenant (A) and a twin tenant (B, same capabilities, no shared data), built through
  the public API. `RESOURCES` maps each path parameter (and each body field naming a resource) to the factory that
  makes it; `FIELD_VALUES` gives the other body fields a valid value. `World.request` turns an operation into a
  concrete request and raises `Unfillable` when an operation has a parameter or required field nobody knows how
  to fill: the tests fail then, instead of silently testing less.

Used by tests/integration/test_isolation_matrix.py and test_hostile_input.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra import TEMPLATE_PATH
from infra.gateway import Route, _routes
from infra.template import load_template, resources_of_type
from tests.integration.helpers import Tenant, fund, idem, new_account, new_tenant, new_user

TENANT_PLANE, ADMIN_PLANE, PUBLIC = "tenant", "admin", "public"
# The template's authorizers and the plane each guards; a route behind another authorizer fails the tests until it
# is added here (and its keys' behaviour is known).
AUTHORIZER_PLANES = {"TenantAuthorizer": TENANT_PLANE, "AdminAuthorizer": ADMIN_PLANE}
WEBHOOK_PREFIX = "/webhooks/"
# Issuer-gated capabilities both tenants get live (four-eyes), so no partner route answers 403 capability_disabled
# to its own tenant and tenants A and B differ only in what they own.
LIVE_CAPABILITIES = ("card_issuing", "withdrawals")
PROVIDER = "sandbox_open_banking_instant"  # the local stack's open banking provider (infra/local_stack.py)
WATCHLISTED_NAME = "Xylophon Quibbleworth"  # on A's watchlist only: B screening it must not see A's entry


def template_routes() -> list[Route]:
    """Every API route of template.yaml (what API Gateway serves), /v1 first, then /admin, then the public ones."""
    template = load_template(TEMPLATE_PATH)
    routes = _routes(template, resources_of_type(template, "AWS::Serverless::Api"))
    order = {TENANT_PLANE: 0, ADMIN_PLANE: 1, PUBLIC: 2}
    return sorted(routes, key=lambda r: (order[plane(r)], r.resource, r.method))


def plane(route: Route) -> str:
    if route.authorizer is None:
        return PUBLIC
    if route.authorizer not in AUTHORIZER_PLANES:
        raise AssertionError(f"{route.method} {route.resource}: unknown authorizer {route.authorizer}")
    return AUTHORIZER_PLANES[route.authorizer]


ROUTES = template_routes()


def resolver_operations(gateway: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """{(METHOD, path): OpenAPI document} for every operation of every function that serves API routes, read from
    the function's own resolver (its module imported in-process, as its Lambda container would)."""
    operations: dict[tuple[str, str], dict[str, Any]] = {}
    for logical_id in sorted({route.function for route in gateway.routes}):
        spec = gateway.pools[logical_id].spec
        loader = importlib.util.spec_from_file_location(f"_surface_{logical_id}", spec.module_file)
        assert loader is not None and loader.loader is not None, spec.module_file
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        document = json.loads(module.app.get_openapi_json_schema())
        for path, methods in document["paths"].items():
            for method in methods:
                operations[(method.upper(), path)] = document
    return operations


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return dict(document["paths"][path][method.lower()])


def deref(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


def body_schema(document: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    content = (op.get("requestBody") or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema")
    return None if schema is None else deref(document, schema)


# ---------------------------------------------------------------- the world


class Unfillable(AssertionError):
    """An operation has a path parameter, required query parameter or required body field with no factory/value."""


@dataclass(frozen=True)
class Resource:
    make: Callable[[World], str]
    tenant_owned: bool = True  # False: not a tenant's (a provider name, a webhook delivery): no isolation to check


RESOURCES: dict[str, Resource] = {}


def resource(*names: str, tenant_owned: bool = True) -> Callable[[Callable[[World], str]], Callable[[World], str]]:
    def register(make: Callable[[World], str]) -> Callable[[World], str]:
        for name in names:
            RESOURCES[name] = Resource(make, tenant_owned)
        return make

    return register


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# Non-resource body fields: one valid value each, or a function making it per request (a field of the same name
# means the same thing across the API).
FIELD_VALUES: dict[str, Any] = {
    "amount_minor": 1,
    "currency": "EUR",
    "kind": "ledger",
    "country": "FR",
    "jurisdictions": ["FR"],
    "external_ref": lambda: uuid.uuid4().hex,  # unique per tenant
    "date": today,
    "from": lambda: f"{today()}T00:00:00Z",  # an export's scope: today so far
    "to": lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "kinds": ["ledger"],
    "full_name": "Ada Lovelace",
    "name": WATCHLISTED_NAME,
    "iban": "FR7630006000011234567890189",
    "reason": "isolation matrix",
    "text": "isolation matrix note",
    "assignee": "alice",
    "level": "tier_1",
    "tier": "tier_0",
    "outcome": "no_action",
    # A harmless capability change (settlement stays shadow): must not gate A's other routes.
    "capability": "settlement_finalization",
    "mode": "shadow",
}


@dataclass
class World:
    call: Any
    admin_key: str
    second_admin_key: str  # requests what admin_key approves (four-eyes)
    a: Tenant = field(init=False)
    b: Tenant = field(init=False)
    revoked_key: str = field(init=False)  # a key of A, revoked
    made: dict[Callable[[World], str], str] = field(default_factory=dict)

    def build(self, name: str = "World") -> World:
        self.a = self.tenant(f"{name} A")
        self.b = self.tenant(f"{name} B")
        spare = new_tenant_key(self.call, self.admin_key, self.a.id)
        revoked = self.call("POST", f"/admin/v1/tenants/{self.a.id}/api-keys/{spare[0]}/revoke", key=self.admin_key)
        assert revoked.status == 200, revoked.json()
        self.revoked_key = spare[1]
        for name_ in RESOURCES:  # everything exists before any test runs, so every leak has something to leak
            self.resource(name_)
        return self

    def tenant(self, name: str) -> Tenant:
        tenant = new_tenant(self.call, self.admin_key, name)
        for capability in LIVE_CAPABILITIES:
            go_live(self.call, (self.second_admin_key, self.admin_key), tenant.id, capability)
        return tenant

    def resource(self, name: str) -> str:
        """The resource a name stands for, made once (names sharing a factory share the resource)."""
        made = RESOURCES[name].make
        if made not in self.made:
            self.made[made] = made(self)
        return self.made[made]

    def a_ids(self) -> set[str]:
        """Every identifier of tenant A the world made (what another tenant must never see)."""
        owned = {self.resource(name) for name, r in RESOURCES.items() if r.tenant_owned}
        return owned | {self.a.id, self.a.key_id}

    def field_value(self, name: str) -> Any:
        if name in RESOURCES:
            return self.resource(name)
        value = FIELD_VALUES[name]  # KeyError: nobody knows how to fill it
        return value() if callable(value) else value

    def post(self, path: str, body: dict[str, Any], key: str | None = None, status: int = 201) -> dict[str, Any]:
        made = self.call("POST", path, key=key or self.a.key, headers=idem(), json=body)
        assert made.status == status, (path, made.status, made.json())
        return dict(made.json())

    # ------------------------------------------------------------ requests for an operation

    def request(self, document: dict[str, Any] | None, method: str, path: str) -> Request:
        """A valid request for tenant A's resources: path parameters and required query parameters from RESOURCES
        (or FIELD_VALUES), a body from the operation's schema."""
        op = operation(document, method, path) if document else {"parameters": []}
        params: dict[str, str] = {}
        query: dict[str, str] = {}
        for parameter in op.get("parameters", []):
            where, name = parameter["in"], parameter["name"]
            if where == "path" or (where == "query" and parameter.get("required")):
                try:
                    value = str(self.field_value(name))
                except KeyError:
                    raise Unfillable(f"{method} {path}: no factory for {where} parameter {name!r}") from None
                (params if where == "path" else query)[name] = value
        for name in _template_parameters(path):
            if name not in params:  # a route parameter the resolver's document does not declare
                try:
                    params[name] = str(self.field_value(name))
                except KeyError:
                    raise Unfillable(f"{method} {path}: no factory for path parameter {name!r}") from None
        schema = body_schema(document, op) if document else None
        body = None if schema is None else self.body(document or {}, schema, f"{method} {path}")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = {}
        return Request(method, path, params, query, body)

    def body(self, document: dict[str, Any], schema: dict[str, Any], where: str) -> Any:
        schema = _non_null(deref(document, schema))
        if schema.get("type") != "object" or "properties" not in schema:
            raise Unfillable(f"{where}: cannot build a body of schema {schema}")
        body: dict[str, Any] = {}
        required = set(schema.get("required", []))
        for name, declared in schema["properties"].items():
            if name not in required and name not in RESOURCES:
                continue  # optional fields are left to their defaults, except those naming a resource
            prop = _non_null(deref(document, declared))
            try:
                body[name] = self.field_value(name)
            except KeyError:
                if prop.get("type") == "object" and "properties" in prop:
                    body[name] = self.body(document, prop, f"{where}.{name}")
                elif "enum" in prop or "const" in prop:
                    body[name] = prop["enum"][0] if "enum" in prop else prop["const"]
                else:
                    raise Unfillable(f"{where}: no value for body field {name!r}") from None
        return body


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the template, e.g. /v1/users/{user_id}
    params: dict[str, str]
    query: dict[str, str]
    body: Any

    @property
    def url(self) -> str:
        concrete = self.path
        for name, value in self.params.items():
            concrete = concrete.replace("{" + name + "}", value)
        return concrete

    def names(self) -> Iterator[tuple[str, str]]:
        """(name, value) of every path parameter and top-level body field."""
        yield from self.params.items()
        if isinstance(self.body, dict):
            yield from ((k, v) for k, v in self.body.items() if isinstance(v, str))


def _template_parameters(path: str) -> list[str]:
    return [segment[1:-1].rstrip("+") for segment in path.split("/") if segment.startswith("{")]


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` is anyOf [X, null] in the documents: X."""
    variants = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return variants[0] if len(variants) == 1 else schema


def new_tenant_key(call: Any, admin_key: str, tenant_id: str) -> tuple[str, str]:
    issued = call("POST", f"/admin/v1/tenants/{tenant_id}/api-keys", key=admin_key, json={}, headers=idem())
    assert issued.status == 201, issued.json()
    return str(issued.json()["key_id"]), str(issued.json()["api_key"])


def go_live(call: Any, admins: tuple[str, str], tenant_id: str, capability: str) -> str:
    """Four-eyes activation: admins[0] requests, admins[1] approves. Returns the request id."""
    body = {"capability": capability, "mode": "live", "contract_ref": f"ISSUER-{capability}"}
    requested = call("POST", f"/admin/v1/tenants/{tenant_id}/capabilities", key=admins[0], json=body, headers=idem())
    assert requested.status == 202, requested.json()
    request_id = str(requested.json()["id"])
    path = f"/admin/v1/tenants/{tenant_id}/capability-requests/{request_id}/approve"
    approved = call("POST", path, key=admins[1], json={})
    assert approved.status == 200, approved.json()
    return request_id


# ---------------------------------------------------------------- factories (tenant A unless said otherwise)


@resource("tenant_id")
def _tenant(world: World) -> str:
    return world.a.id


@resource("user_id", "subject_user_id")
def _user(world: World) -> str:
    return new_user(world.call, world.a)


@resource("account_id", "from_account_id")
def _funded_account(world: World) -> str:
    account = new_account(world.call, world.a, world.resource("user_id"))
    fund(world.call, world.a, account, 10_000)
    return account


@resource("to_account_id")
def _second_account(world: World) -> str:
    return new_account(world.call, world.a, world.resource("user_id"))


@resource("merchant_account_id")
def _merchant_account(world: World) -> str:
    merchant = {"name": "Matrix Cafe", "city": "Paris", "category_code": "5814"}
    body = {"user_id": world.resource("user_id"), "currency": "EUR", "merchant": merchant}
    return str(world.post("/v1/accounts", body)["id"])


@resource("txn_id")
def _held_transaction(world: World) -> str:
    """A manual-capture hold: capture, void and reverse each have something to act on (in that order)."""
    body = {
        "from_account_id": world.resource("account_id"),
        "to_account_id": world.resource("to_account_id"),
        "amount_minor": 100,
        "currency": "EUR",
        "capture": "manual",
    }
    return str(world.post("/v1/transfers", body)["id"])


@resource("card_id")
def _card(world: World) -> str:
    body = {"user_id": world.resource("user_id"), "account_id": world.resource("account_id")}
    return str(world.post("/v1/cards", body)["id"])


@resource("quote_id")
def _quote(world: World) -> str:
    jpy = new_account(world.call, world.a, world.resource("user_id"), "JPY")
    body = {"account_id": world.resource("account_id"), "to_account_id": jpy, "amount_minor": 100, "currency": "EUR"}
    return str(world.post("/v1/fx/quotes", body)["id"])


@resource("qr_payment_id")
def _qr_payment(world: World) -> str:
    body = {"merchant_account_id": world.resource("merchant_account_id"), "amount_minor": 1, "currency": "EUR"}
    return str(world.post("/v1/qr-payments", body)["id"])


@resource("check_id")
def _kyc_check(world: World) -> str:
    return str(world.post(f"/v1/users/{world.resource('user_id')}/kyc-checks", {"level": "tier_1"}, status=202)["id"])


@resource("key_id")
def _spare_key(world: World) -> str:
    """A key of A that the admin revoke route may revoke (never the key the tests use)."""
    return new_tenant_key(world.call, world.admin_key, world.a.id)[0]


@resource("request_id")
def _capability_request(world: World) -> str:
    """A PENDING live request for A, by the second admin: admin_key may approve it (four-eyes)."""
    body = {"capability": "settlement_finalization", "mode": "live", "contract_ref": "ISSUER-matrix"}
    made = world.post(f"/admin/v1/tenants/{world.a.id}/capabilities", body, key=world.second_admin_key, status=202)
    return str(made["id"])


@resource("entry_id")
def _watchlist_entry(world: World) -> str:
    body = {"name": WATCHLISTED_NAME, "reason": "isolation matrix"}
    return str(world.post(f"/admin/v1/tenants/{world.a.id}/watchlist", body, key=world.admin_key)["id"])


@resource("case_id")
def _case(world: World) -> str:
    body = {"tenant_id": world.a.id, "reason": "isolation matrix", "subject_user_id": world.resource("user_id")}
    return str(world.post("/admin/v1/cases", body, key=world.admin_key)["id"])


@resource("provider", tenant_owned=False)
def _provider(world: World) -> str:
    """The provider A's fundings went through (the local stack's default): its webhooks, its statements."""
    return PROVIDER


@resource("event_key", tenant_owned=False)
def _webhook_event(world: World) -> str:
    """A stored (rejected: unsigned) delivery from the provider; its key from the admin list."""
    provider = world.resource("provider")
    body = json.dumps({"marker": uuid.uuid4().hex}).encode()
    world.call("POST", f"/webhooks/{provider}", data=body)
    listed = world.call("GET", "/admin/v1/webhook-events", key=world.admin_key, query={"provider": provider})
    assert listed.status == 200, listed.json()
    digest = hashlib.sha256(body).hexdigest()
    return next(str(e["event_key"]) for e in listed.json()["items"] if e["body_sha256"] == digest)


@resource("run_id")
def _reconciliation_run(world: World) -> str:
    """A completed reconciliation of A's day whose bank statement has two credits the ledger never saw: two open
    exceptions, one for the proposed adjustment below, one left open."""
    from moncore.providers.statements import ExtraLine, SandboxBankStatements, SandboxPlan

    day = today()
    extra = tuple(ExtraLine(reference, amount, "EUR") for reference, amount in UNKNOWN_CREDITS.items())
    SandboxBankStatements.plan(world.a.id, day, SandboxPlan(extra=extra))
    body = {"tenant_id": world.a.id, "provider": world.resource("provider"), "date": day}
    run_id = str(world.post("/admin/v1/reconciliations", body, key=world.admin_key, status=202)["id"])
    deadline = time.monotonic() + 60
    while (run := world.call("GET", f"/admin/v1/reconciliations/{run_id}", key=world.admin_key).json())[
        "status"
    ] == "RUNNING":
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["status"] == "COMPLETED", run
    return run_id


UNKNOWN_CREDITS = {"MATRIX-OPEN": 100, "MATRIX-ADJUSTED": 200}


def _exception(world: World, reference: str) -> str:
    run = world.call("GET", f"/admin/v1/reconciliations/{world.resource('run_id')}", key=world.admin_key).json()
    return next(str(e["id"]) for e in run["exceptions"]["items"] if e["reference"] == reference)


@resource("exception_id")
def _open_exception(world: World) -> str:
    return _exception(world, "MATRIX-OPEN")


@resource("adjustment_id")
def _proposed_adjustment(world: World) -> str:
    """Proposed by the second admin, so admin_key may approve it (four-eyes)."""
    exception_id = _exception(world, "MATRIX-ADJUSTED")
    path = f"/admin/v1/reconciliations/{world.resource('run_id')}/exceptions/{exception_id}/adjustments"
    return str(world.post(path, {"reason": "isolation matrix"}, key=world.second_admin_key)["id"])


@resource("export_id")
def _export(world: World) -> str:
    body = {"kind": "ledger", "from": world.field_value("from"), "to": world.field_value("to")}
    return str(world.post("/v1/exports", body, status=202)["id"])


@resource("bundle_id")
def _evidence_bundle(world: World) -> str:
    body = {
        "tenant_id": world.a.id,
        "kinds": ["ledger"],
        "from": world.field_value("from"),
        "to": world.field_value("to"),
    }
    return str(world.post("/admin/v1/evidence-bundles", body, key=world.admin_key, status=202)["id"])
