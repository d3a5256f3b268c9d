"""Hostile input against every operation of the partner and admin APIs (issue 8 part 2): no 5xx, every 4xx is
problem+json with a code, and a rejected request posts nothing (tenant A's ledger legs are counted around it).

- Generated requests: schemathesis reads the published OpenAPI documents (/v1/openapi.json, /admin/v1/openapi.json)
  and generates, per operation, valid requests on tenant A's real resources (path ids from the world of
  tests/integration/api_surface.py) and invalid ones (negative mode: wrong types, out-of-range values, missing
  fields), sent through the local gateway in-process (a WSGI shim) with the plane's key. Derandomized, bounded.
- Hand-written requests, generated over every operation that takes a body: oversized (past the API's 64 KiB and
  past API Gateway's 10 MiB), malformed, 10,000 levels deep, invalid UTF-8, a UTF-8 BOM, lone UTF-16 surrogates,
  NUL bytes and overlong strings in each string field, huge and float amounts, duplicate keys, and CR/LF in the
  Idempotency-Key and X-Correlation-Id headers.
test_bad_input.py covers the transfer route's field rules one by one; this file covers the whole surface.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.integration.api_surface import (
    ADMIN_PLANE,
    RESOURCES,
    ROUTES,
    TENANT_PLANE,
    WATCHLISTED_NAME,
    Request,
    World,
    plane,
    resolver_operations,
)
from tests.integration.helpers import idem

pytestmark = pytest.mark.xdist_group("integration")

MAX_BODY_BYTES = 64 * 1024  # moncore.http.resolver.MAX_BODY_BYTES (the API's limit, API.md)
GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit (infra/gateway.py)
EXAMPLES = 3  # per operation and generation mode: ~70 operations x 2 modes stay within the file's time budget
API_ROUTES = [r for r in ROUTES if plane(r) in (TENANT_PLANE, ADMIN_PLANE) and not r.resource.endswith("openapi.json")]
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
GENERATION = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run (hypothesis seeds from the test)
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: the failing example is reported as sent
    suppress_health_check=list(HealthCheck),
)
PUBLISHED = {TENANT_PLANE: "/v1/openapi.json", ADMIN_PLANE: "/admin/v1/openapi.json"}


@dataclass(frozen=True)
class Hostile:
    world: World
    documents: dict[str, dict[str, Any]]  # plane -> published OpenAPI document
    gateway: Any

    def key(self, where: str) -> str:
        return self.world.a.key if where == TENANT_PLANE else self.world.admin_key

    def valid(self, method: str, path: str) -> Request:
        where = plane(next(r for r in ROUTES if (r.method, r.resource) == (method, path)))
        return self.world.request(self.documents[where], method, path)

    def legs(self) -> int:
        return ledger_legs(self.world.a.id)


@pytest.fixture(scope="module")
def hostile(call: Any, gateway: Any, admin_key: str) -> Hostile:
    from infra.local_stack import create_admin_key

    _, second_admin = create_admin_key(name="hostile-second-admin", role="admin")
    world = World(call, admin_key, second_admin).build("Hostile")
    documents = {}
    for where, url in PUBLISHED.items():
        got = call("GET", url)
        assert got.status == 200, got.text[:300]
        documents[where] = got.json()
    return Hostile(world, documents, gateway)


def test_the_published_documents_cover_every_api_route(hostile: Hostile, gateway: Any) -> None:
    """Every /v1 and /admin route API Gateway serves is in its plane's published document (else schemathesis
    would never see it), and each document is exactly its resolver's."""
    for route in API_ROUTES:
        paths = hostile.documents[plane(route)]["paths"]
        assert route.method.lower() in paths.get(route.resource, {}), f"{route.method} {route.resource} unpublished"
    resolvers = resolver_operations(gateway)
    for route in API_ROUTES:
        assert resolvers[(route.method, route.resource)] == hostile.documents[plane(route)]


# ---------------------------------------------------------------- schemathesis


@pytest.mark.parametrize("route", API_ROUTES, ids=[f"{r.method} {r.resource}" for r in API_ROUTES])
def test_generated_requests(hostile: Hostile, route: Any) -> None:
    """Positive cases on A's real resources, then negative ones (each input the operation declares, made invalid);
    an operation that declares no input (GET /v1/tenant/exposure) has nothing to make invalid."""
    import schemathesis
    from schemathesis import GenerationMode

    where = plane(route)
    app = wsgi(hostile.gateway)
    published = schemathesis.openapi.from_dict(hostile.documents[where])
    pinned = schemathesis.openapi.from_dict(pin(hostile.documents[where], hostile.world))
    published.app = pinned.app = app
    declared = published[route.resource][route.method].definition.raw
    valid = hostile.valid(route.method, route.resource)
    # Positive: the ids, currencies and countries pinned to A's real ones (path, query and body), the rest generated,
    # so the valid requests reach real resources and the rules behind validation. Negative: the published document.
    fixed = {"path_parameters": valid.params or None, "query": valid.query or None}
    strategies = [pinned[route.resource][route.method].as_strategy(generation_mode=GenerationMode.POSITIVE, **fixed)]
    if declared.get("parameters") or declared.get("requestBody"):
        operation = published[route.resource][route.method]
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    mutating = route.method in MUTATING

    def check(case: Any) -> None:
        before = hostile.legs() if mutating else 0
        headers = {"Authorization": f"Bearer {hostile.key(where)}", "Idempotency-Key": str(uuid.uuid4())}
        response = case.call(headers=headers)
        described = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300} -> {response.status_code}"
        assert response.status_code < 500, (described, response.text[:500])
        if response.status_code >= 400:
            assert_problem(response.status_code, response.headers.get("content-type", [""])[0], response.content)
            if mutating:
                assert hostile.legs() == before, ("a rejected request posted", described)

    for strategy in strategies:
        GENERATION(given(case=strategy)(check))()


# Body fields pinned to one real value in positive generation, besides every resource id (api_surface.RESOURCES):
# a random three-letter currency or two-letter country is almost never a real one, so without them nearly every
# "valid" request would stop at validation.
PINNED_FIELDS = ("currency", "country", "jurisdictions", "date", "from", "to", "iban", "kinds")


def pin(document: dict[str, Any], world: World) -> dict[str, Any]:
    """A copy of an OpenAPI document whose body properties naming a resource of A, or one of PINNED_FIELDS, accept
    only A's real value (arrays: only that value's items)."""
    pinned = copy.deepcopy(document)
    for schema in pinned.get("components", {}).get("schemas", {}).values():
        for name, prop in (schema.get("properties") or {}).items():
            if name not in RESOURCES and name not in PINNED_FIELDS:
                continue
            value = world.field_value(name)
            if isinstance(value, list):
                schema["properties"][name] = {"type": "array", "items": {"enum": value}, "minItems": 1, "maxItems": 2}
            else:
                nullable = any(s.get("type") == "null" for s in prop.get("anyOf", []))
                schema["properties"][name] = {"enum": [value, None] if nullable else [value]}
    return pinned


def wsgi(gateway: Any) -> Callable[..., Iterable[bytes]]:
    """The in-process gateway as a WSGI application, so schemathesis serializes and sends its cases itself."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [(k[5:].replace("_", "-").title(), v) for k, v in environ.items() if k.startswith("HTTP_")]
        headers += [(k.replace("_", "-").title(), environ[k]) for k in ("CONTENT_TYPE",) if environ.get(k)]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        # RAW_URI keeps the path's percent-encoding as sent (PATH_INFO is decoded); the query comes separately.
        path = environ["RAW_URI"].partition("?")[0]
        query = environ.get("QUERY_STRING") or ""
        got = gateway.handle(environ["REQUEST_METHOD"], f"{path}?{query}" if query else path, headers, body)
        start_response(f"{got.status} {HTTPStatus(got.status).phrase}", got.headers.pairs())
        return [got.body]

    return app


# ---------------------------------------------------------------- hand-written, over every body


BODY_ROUTES = [r for r in API_ROUTES if r.method in MUTATING]


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def first_member(valid: bytes) -> tuple[bytes, bytes]:
    """(`"name": value` of the body's first member, the rest after it), for bodies edited as bytes."""
    body = json.loads(valid)
    name, value = next(iter(body.items()), ("note", "x"))
    return json.dumps(name).encode(), json.dumps(value).encode()


def duplicated(valid: bytes) -> bytes:
    """The first member twice, with the same value: refused even when both readings would agree."""
    name, value = first_member(valid)
    member = name + b": " + value
    return b"{" + member + b", " + (valid[1:] if valid != b"{}" else member + b"}")


def first_member_as(raw: bytes) -> Callable[[bytes], bytes]:
    """The body with its first member's value replaced by `raw` (a token json.dumps would never write)."""

    def make(valid: bytes) -> bytes:
        name, _ = first_member(valid)
        return b"{" + name + b": " + raw + b", " + (valid[1:] if valid != b"{}" else b'"x": 1}')

    return make


STRUCTURAL: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda valid: valid[:-1],
    "trailing_garbage": lambda valid: valid + b"}",
    "objects_10000_deep": lambda _: deep(10_000),
    "arrays_10000_deep": lambda _: b"[" * 10_000 + b"]" * 10_000,
    "invalid_utf8_in_a_string": first_member_as(b'"caf\xc3\x28 \xff\xfe"'),
    "utf8_bom": lambda valid: b"\xef\xbb\xbf" + valid,
    "utf16": lambda valid: valid.decode().encode("utf-16"),
    "duplicate_member": duplicated,
    "nan": first_member_as(b"NaN"),
    "infinity": first_member_as(b"-Infinity"),
    "just_over_the_limit": lambda valid: valid[:-1] + b', "pad": "' + b"x" * MAX_BODY_BYTES + b'"}',
}


@pytest.mark.parametrize("route", BODY_ROUTES, ids=[f"{r.method} {r.resource}" for r in BODY_ROUTES])
def test_structurally_hostile_bodies_are_refused_before_anything_runs(call: Any, hostile: Hostile, route: Any) -> None:
    """Each is 413 or 422 problem+json on every route that takes a body; none posts."""
    valid = hostile.valid(route.method, route.resource)
    encoded = json.dumps(valid.body).encode()
    assert encoded.startswith(b"{") and encoded.endswith(b"}")
    before = hostile.legs()
    failures = []
    for name, make in STRUCTURAL.items():
        got = send(call, hostile, valid, make(encoded))
        expected = (413, "payload_too_large") if name == "just_over_the_limit" else (422, "validation_error")
        failures += problems_of(got, name, *expected)
    assert not failures, failures
    assert hostile.legs() == before


def test_past_api_gateways_limit_is_413_from_the_gateway(call: Any, hostile: Hostile) -> None:
    valid = hostile.valid("POST", "/v1/transfers")
    got = send(call, hostile, valid, b"{" + b" " * GATEWAY_MAX_BODY_BYTES + b"}")
    assert_problem(got.status, got.headers.get("Content-Type"), got.body)
    assert (got.status, got.json()["code"]) == (413, "payload_too_large")


def string_fields(body: Any) -> list[str]:
    return [k for k, v in body.items() if isinstance(v, str)] if isinstance(body, dict) else []


# A lone UTF-16 surrogate is a valid JSON escape but no character (it cannot be stored or hashed as UTF-8); no field of
# the API takes 10,000 characters.
MUST_BE_REFUSED = ("a\ud800b", "é" * 10_000)


def test_nul_bytes_and_overlong_strings_in_every_string_field(call: Any, hostile: Hostile) -> None:
    """In every string field of every body: a NUL is refused (422) or accepted, never a crash; MUST_BE_REFUSED is
    refused; a refused request posts nothing."""
    failures, checked = [], 0
    for route in BODY_ROUTES:
        valid = hostile.valid(route.method, route.resource)
        for name in string_fields(valid.body):
            for value in ("Ada\x00Lovelace", *MUST_BE_REFUSED):
                checked += 1
                before = hostile.legs()
                got = send(call, hostile, valid, json.dumps(valid.body | {name: value}).encode())
                where = f"{route.method} {route.resource} {name}={value[:12]!r}"
                if got.status >= 500 or (got.status < 400 and value in MUST_BE_REFUSED):
                    failures.append((where, got.status, got.text[:200]))
                elif got.status >= 400:
                    failures += problems_of(got, where)
                    if hostile.legs() != before:
                        failures.append((where, "a refused request posted"))
    assert checked > 4 * len(BODY_ROUTES), checked  # most bodies have string fields: the loop is not vacuous
    assert not failures, failures


def test_a_nul_in_a_name_is_kept_as_sent_and_hides_nothing_from_screening(call: Any, hostile: Hostile) -> None:
    """Free text may carry a NUL: it is stored as sent (never cut there, so what was screened is what is stored),
    and screening reads it as a separator, so it cannot split a listed name into an unlisted one."""
    world = hostile.world
    made = call(
        "POST",
        "/v1/users",
        key=world.b.key,  # B: A's watchlist may hold the NUL names the test above sent through its admin routes
        headers=idem(),
        json={"external_ref": uuid.uuid4().hex, "full_name": "Grace\x00Hopper", "country": "FR"},
    )
    assert made.status == 201, made.text[:300]
    assert call("GET", f"/v1/users/{made.json()['id']}", key=world.b.key).json()["full_name"] == "Grace\x00Hopper"
    matches = {}
    for name in (WATCHLISTED_NAME, WATCHLISTED_NAME.replace(" ", "\x00")):
        checked = call("POST", "/v1/screening/checks", key=world.a.key, json={"name": name})
        assert checked.status == 200, checked.text[:300]
        matches[name] = sorted(m["entry_id"] for m in checked.json()["matches"])
    assert len(set(map(tuple, matches.values()))) == 1 and matches[WATCHLISTED_NAME], matches


AMOUNTS = {
    "2**64": b"18446744073709551616",
    "2**63": b"9223372036854775808",
    "4301_digits": b"9" * 4301,  # past Python's int parsing limit: refused as JSON, not a crash
    "minus_zero": b"-0",
    "1e3": b"1e3",
    "1E3": b"1E3",
    "1000.0": b"1000.0",
    "1.0e3": b"1.0e3",
    "string": b'"1000"',
    "infinity": b"Infinity",
    "negative": b"-1",
    "true": b"true",
}


def test_huge_negative_and_float_amounts_are_422_on_every_amount_route(call: Any, hostile: Hostile) -> None:
    failures, routes = [], []
    for route in BODY_ROUTES:
        valid = hostile.valid(route.method, route.resource)
        if not isinstance(valid.body, dict) or "amount_minor" not in valid.body:
            continue
        routes.append(f"{route.method} {route.resource}")
        before = hostile.legs()
        for name, raw in AMOUNTS.items():
            body = json.dumps(valid.body | {"amount_minor": "__AMOUNT__"}).encode().replace(b'"__AMOUNT__"', raw)
            got = send(call, hostile, valid, body)
            where = f"{route.method} {route.resource} amount_minor={name}"
            failures += problems_of(got, where, 422, "validation_error")
        if hostile.legs() != before:
            failures.append((routes[-1], "a refused amount posted"))
    assert {"POST /v1/transfers", "POST /v1/fundings", "POST /v1/withdrawals"} <= set(routes), routes
    assert not failures, failures


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "key",
    ["k\r\nX-Injected: 1", "k\nX-Injected: 1", "k\r", "k\x00", "k\t", "k\u2028", "x" * 256, ""],
    ids=["crlf", "lf", "cr", "nul", "tab", "line_separator", "256_chars", "empty"],
)
def test_control_characters_in_the_idempotency_key_are_422(call: Any, hostile: Hostile, key: str) -> None:
    valid = hostile.valid("POST", "/v1/transfers")
    before = hostile.legs()
    got = call("POST", valid.url, key=hostile.world.a.key, json=valid.body, headers={"Idempotency-Key": key})
    assert_problem(got.status, got.headers.get("Content-Type"), got.body)
    assert (got.status, got.json()["code"]) == (422, "validation_error")
    assert got.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert "X-Injected" not in got.headers
    assert hostile.legs() == before


@pytest.mark.parametrize(
    "sent",
    ["c1\r\nX-Injected: 1", "c1\nSet-Cookie: a=b", "c1\r", "c\x00", "x" * 129, "é"],
    ids=["crlf", "lf_cookie", "cr", "nul", "129_chars", "non_ascii"],
)
def test_a_correlation_id_that_is_not_safe_to_echo_is_replaced(call: Any, hostile: Hostile, sent: str) -> None:
    got = call(
        "GET",
        f"/v1/users/{hostile.world.resource('user_id')}",
        key=hostile.world.a.key,
        headers={"X-Correlation-Id": sent},
    )
    assert got.status == 200
    echoed = got.headers["X-Correlation-Id"]
    assert echoed != sent and uuid.UUID(echoed)  # a fresh one, never the caller's line breaks
    assert "X-Injected" not in got.headers and "Set-Cookie" not in got.headers
    assert all("\r" not in v and "\n" not in v for _, v in got.headers.pairs())


# ---------------------------------------------------------------- webhooks without a configured secret


def test_a_provider_without_a_webhook_secret_refuses_deliveries_without_a_crash(call: Any, hostile: Hostile) -> None:
    """Unsigned: 401 invalid_signature (whatever is configured). Signed: 503 webhook_not_configured, retryable (the
    provider redelivers once an operator adds the secret). Both stored as rejected attempts, neither a 500."""
    from moncore.domain.webhooks import signature_header

    provider = "sandbox_open_banking_instant"
    client = boto3.client("secretsmanager")
    secret_id = os.environ["MONCORE_WEBHOOK_SECRETS"]
    document = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    if provider in document:  # another test configured it: take it out for this test, put it back after
        client.put_secret_value(
            SecretId=secret_id, SecretString=json.dumps({k: v for k, v in document.items() if k != provider})
        )
    try:
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex}"}).encode()
        unsigned = call("POST", f"/webhooks/{provider}", data=body)
        assert_problem(unsigned.status, unsigned.headers.get("Content-Type"), unsigned.body)
        assert (unsigned.status, unsigned.json()["code"]) == (401, "invalid_signature")
        signed = call(
            "POST",
            f"/webhooks/{provider}",
            data=body,
            headers={"MonCore-Signature": signature_header("guess", int(time.time()), body)},
        )
        assert_problem(signed.status, signed.headers.get("Content-Type"), signed.body)
        assert (signed.status, signed.json()["code"]) == (503, "webhook_not_configured")
        listed = call("GET", "/admin/v1/webhook-events", key=hostile.world.admin_key, query={"provider": provider})
        digest = hashlib.sha256(body).hexdigest()
        reasons = sorted(e["reason"] for e in listed.json()["items"] if e["body_sha256"] == digest)
        assert reasons == ["missing_signature", "no_active_secret"]
    finally:
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document))


# ---------------------------------------------------------------- helpers


def send(call: Any, hostile: Hostile, request: Request, body: bytes) -> Any:
    key = hostile.key(TENANT_PLANE if request.path.startswith("/v1/") else ADMIN_PLANE)
    headers = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
    return call(request.method, request.url, key=key, headers=headers, data=body, query=request.query or None)


def problems_of(got: Any, where: str, status: int | None = None, code: str | None = None) -> list[Any]:
    """[] when `got` is a problem+json 4xx (of `status` and `code` when given), else what is wrong with it."""
    try:
        assert_problem(got.status, got.headers.get("Content-Type"), got.body)
        if status is not None:
            assert (got.status, got.json()["code"]) == (status, code)
    except (AssertionError, ValueError):
        return [(where, got.status, got.headers.get("Content-Type"), got.text[:200])]
    return []


def assert_problem(status: int, content_type: str | None, body: bytes) -> None:
    assert content_type == "application/problem+json", (status, content_type, body[:300])
    problem = json.loads(body)
    assert isinstance(problem.get("code"), str) and problem["code"], problem
    assert problem.get("status") == status and problem.get("title"), problem


def ledger_legs(tenant_id: str) -> int:
    """Tenant A's ledger legs, counted on the Ledger's sparse legs_by_tenant index (a Query, not a table scan), read
    with plain boto3 so the assertion does not trust the code under test."""
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_LEDGER_TABLE"])
    count, kwargs = 0, {"IndexName": "legs_by_tenant", "Select": "COUNT"}
    while True:
        page = table.query(
            KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": tenant_id}, **kwargs
        )
        count += page["Count"]
        if "LastEvaluatedKey" not in page:
            return count
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
