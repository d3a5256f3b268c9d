"""A local API Gateway (REST API, Lambda proxy integration) built from template.yaml, running handlers in-process.

Routes come from the `Type: Api` events of every AWS::Serverless::Function; authorizers, their identity sources and
cache TTL from the Api's `Auth`; error bodies from its `GatewayResponses`. Requests become version 1.0 proxy events and
go to the function's `Handler` the way Lambda would call it:

- A function owns a pool of "containers". A container is a worker process that imported the handler once (with the
  function's own Lambda environment) and serves one request at a time. The pool grows on demand up to
  `max_containers`, so concurrent requests really run concurrently, like concurrent Lambda invocations.
- The authorizer is invoked like any function. A missing identity source answers 401 without invoking it, the error
  "Unauthorized" is 401, a returned policy is evaluated against the method ARN (explicit Deny wins, else an Allow is
  needed, else 403), and results are cached per identity for `ReauthorizeEvery` seconds, as API Gateway does.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote

from infra import REPO_ROOT
from infra.environment import function_variables
from infra.resources import LOCAL_API_ID
from infra.template import ResolveContext, resolve, resources_of_type
from infra.workers import FunctionError, ProcessContainer

log = logging.getLogger("infra.gateway")

STAGE = "api"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway REST payload limit
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024  # synchronous Lambda response limit
MAX_CONTAINERS = 8
FUNCTION_TYPE = "AWS::Serverless::Function"

# Gateway response types API Gateway produces here, with its own default status code and message.
_RESPONSE_DEFAULTS: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "User is not authorized to access this resource"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "AUTHORIZER_FAILURE": (500, "Internal server error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal server error"),
    # A Lambda proxy function that raises or returns a malformed response: 502 "Internal server error".
    "DEFAULT_5XX": (502, "Internal server error"),
}


# ---------------------------------------------------------------- headers


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued HTTP headers (`headers["content-type"]` gives the last value)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = [(str(name), str(value)) for name, value in pairs]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return values[-1]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._pairs:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._pairs})

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [value for header, value in self._pairs if header.lower() == key]

    def add(self, name: str, value: str) -> None:
        self._pairs.append((name, value))

    def setdefault(self, name: str, value: str) -> str:
        if name not in self:
            self.add(name, value)
        return self[name]

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class GatewayResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


HeadersInput = Mapping[str, str] | Iterable[tuple[str, str]] | None
QueryInput = Mapping[str, str | list[str]] | None


# ---------------------------------------------------------------- functions and containers


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    function_arn: str
    code_dir: Path
    module_file: Path
    handler_name: str
    variables: Mapping[str, str]  # the function's own Environment.Variables (Globals are in os.environ already)
    memory_mb: int = 128
    timeout_seconds: int = 3


class FunctionPool:
    """Warm containers of one function, started on demand up to `max_containers` (then requests wait for one).

    A container is a worker process (infra/workers.py) that imported the handler once and serves one request at a
    time, like a Lambda execution environment. Processes, not threads: powertools keeps the current event on a class
    attribute (`BaseRouter.current_event = ...`), so two requests in threads of one interpreter could read each other's
    event, tenant included. Each worker gets exactly the function's Lambda environment: the shared variables already
    in os.environ (template Globals + local endpoints) plus the function's own Environment.Variables.
    """

    def __init__(self, spec: FunctionSpec, max_containers: int = MAX_CONTAINERS) -> None:
        self.spec = spec
        self.max_containers = max_containers
        self._idle: list[ProcessContainer] = []
        self._all: list[ProcessContainer] = []
        self._starting = 0
        self._condition = threading.Condition()

    @property
    def size(self) -> int:
        with self._condition:
            return len(self._all)

    def invoke(self, event: dict[str, Any]) -> Any:
        container = self._acquire()
        try:
            return container.invoke(event)
        finally:
            self._release(container)

    def warm(self) -> None:
        """Start the first container now (a cold start at startup instead of on the first request)."""
        with self._condition:
            if self._all or self._starting:
                return
        self._release(self._acquire())

    def close(self) -> None:
        with self._condition:
            containers, self._all, self._idle = self._all, [], []
        for container in containers:
            container.close()

    def _acquire(self) -> ProcessContainer:
        with self._condition:
            while not self._idle and len(self._all) + self._starting >= self.max_containers:
                self._condition.wait()
            if self._idle:
                return self._idle.pop()
            self._starting += 1
        try:
            # Started outside the pool lock: other requests keep using idle containers meanwhile.
            container = self._start()
        finally:
            with self._condition:
                self._starting -= 1
                self._condition.notify()
        with self._condition:
            self._all.append(container)
        return container

    def _release(self, container: ProcessContainer) -> None:
        with self._condition:
            if container.alive:
                self._idle.append(container)
            elif container in self._all:  # it crashed (or timed out): the next request gets a fresh one
                self._all.remove(container)
            self._condition.notify()

    def _start(self) -> ProcessContainer:
        return ProcessContainer(
            module_file=self.spec.module_file,
            code_dir=self.spec.code_dir,
            handler_name=self.spec.handler_name,
            env={**os.environ, **self.spec.variables},
            function_name=self.spec.function_name,
            function_arn=self.spec.function_arn,
            memory_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_seconds,
        )


# ---------------------------------------------------------------- routes and authorizers


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ... or ANY
    resource: str  # the template path, e.g. /v1/users/{user_id}
    function: str  # logical id
    authorizer: str | None  # None: public
    event_name: str
    pattern: re.Pattern[str] = field(compare=False)
    parameters: tuple[str, ...] = ()
    # Lower sorts first: literal segments beat {param}, which beats {greedy+} (API Gateway's precedence).
    specificity: tuple[int, ...] = ()

    @classmethod
    def build(cls, method: str, resource: str, function: str, authorizer: str | None, event_name: str) -> Route:
        regex, names, rank = [], [], []
        for segment in resource.strip("/").split("/") if resource != "/" else []:
            if segment.startswith("{") and segment.endswith("+}"):
                names.append(segment[1:-2])
                regex.append(f"(?P<p{len(names)}>.+)")
                rank.append(2)
            elif segment.startswith("{") and segment.endswith("}"):
                names.append(segment[1:-1])
                regex.append(f"(?P<p{len(names)}>[^/]+)")
                rank.append(1)
            else:
                regex.append(re.escape(segment))
                rank.append(0)
        pattern = re.compile("^/" + "/".join(regex) + "$")
        return cls(method.upper(), resource, function, authorizer, event_name, pattern, tuple(names), tuple(rank))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        if found is None:
            return None
        return {name: unquote(found.group(f"p{i}")) for i, name in enumerate(self.parameters, start=1)}


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function: str  # logical id
    payload_type: str  # REQUEST or TOKEN
    identity_headers: tuple[str, ...]
    identity_query: tuple[str, ...]
    ttl_seconds: int


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Headers
    query: dict[str, list[str]]
    body: bytes
    request_id: str
    source_ip: str
    started: float


def _function_logical_id(function_arn: Any) -> str:
    # FunctionArn: !GetAtt Fn.Arn (the only form that names a function in this template family)
    if isinstance(function_arn, dict) and "Fn::GetAtt" in function_arn:
        return str(function_arn["Fn::GetAtt"][0])
    raise ValueError(f"authorizer FunctionArn must be !GetAtt <Function>.Arn, got {function_arn!r}")


def _authorizers(api: Mapping[str, Any], ctx: ResolveContext) -> dict[str, AuthorizerSpec]:
    specs = {}
    for name, config in ((api.get("Auth") or {}).get("Authorizers") or {}).items():
        identity = config.get("Identity") or {}
        payload_type = config.get("FunctionPayloadType", "TOKEN")
        headers = identity.get("Headers") or (
            [identity.get("Header", "Authorization")] if payload_type == "TOKEN" else []
        )
        specs[name] = AuthorizerSpec(
            name=name,
            function=_function_logical_id(config.get("FunctionArn")),
            payload_type=payload_type,
            identity_headers=tuple(headers),
            identity_query=tuple(identity.get("QueryStrings") or ()),
            ttl_seconds=int(resolve(identity.get("ReauthorizeEvery", 300), ctx)),
        )
    return specs


def _routes(template: Mapping[str, Any], apis: Mapping[str, Any]) -> list[Route]:
    routes = []
    default_api = next(iter(apis), None)
    for logical_id, function in resources_of_type(template, FUNCTION_TYPE).items():
        for event_name, event in ((function.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") != "Api":
                continue
            properties = event["Properties"]
            api_id = str((properties.get("RestApiId") or {}).get("Ref", default_api))
            auth = (apis.get(api_id, {}).get("Properties") or {}).get("Auth") or {}
            authorizer = (properties.get("Auth") or {}).get("Authorizer", auth.get("DefaultAuthorizer"))
            if authorizer in ("NONE", "AWS_IAM"):  # AWS_IAM (SigV4) is not emulated: treated as public
                authorizer = None
            routes.append(Route.build(properties["Method"], properties["Path"], logical_id, authorizer, event_name))
    return routes


def function_spec(template: Mapping[str, Any], logical_id: str, ctx: ResolveContext, base_dir: Path) -> FunctionSpec:
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    properties = {**globals_, **(template["Resources"][logical_id].get("Properties") or {})}
    code_dir = (base_dir / str(properties["CodeUri"])).resolve()
    module_path, handler_name = str(properties["Handler"]).rsplit(".", 1)
    return FunctionSpec(
        logical_id=logical_id,
        function_name=ctx.refs.get(logical_id, logical_id),
        function_arn=ctx.attributes.get(logical_id, {}).get("Arn", logical_id),
        code_dir=code_dir,
        module_file=code_dir / (module_path.replace(".", "/") + ".py"),
        handler_name=handler_name,
        variables=function_variables(template, logical_id, ctx),
        memory_mb=int(resolve(properties.get("MemorySize", 128), ctx)),
        timeout_seconds=int(resolve(properties.get("Timeout", 3), ctx)),
    )


# ---------------------------------------------------------------- IAM-style policy evaluation


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "^" + ".*".join(".".join(re.escape(p) for p in part.split("?")) for part in pattern.split("*")) + "$"
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def policy_allows(policy: Mapping[str, Any], method_arn: str, action: str = "execute-api:Invoke") -> bool:
    """Evaluate an authorizer's policyDocument for one method ARN: an explicit Deny wins, else an Allow is needed."""
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        if not any(_wildcard(a).match(action) for a in actions):
            continue
        if not any(_wildcard(r).match(method_arn) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


@dataclass(frozen=True)
class _AuthResult:
    principal_id: str
    policy: Mapping[str, Any]
    context: dict[str, str]
    expires: float


class AuthorizerError(Exception):
    """The gateway answers with a gateway response of this type instead of calling the integration."""

    def __init__(self, response_type: str, message: str | None = None) -> None:
        super().__init__(response_type)
        self.response_type = response_type
        self.message = message


def _context_values(context: Any) -> dict[str, str]:
    # API Gateway accepts only string, number and boolean context values and hands them on as strings.
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise AuthorizerError("AUTHORIZER_CONFIGURATION_ERROR")
    values = {}
    for key, value in context.items():
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[key] = str(value)
        elif value is not None:
            raise AuthorizerError("AUTHORIZER_CONFIGURATION_ERROR")
    return values


# ---------------------------------------------------------------- the gateway


class LocalGateway:
    """Routes HTTP requests to template.yaml's functions like API Gateway (REST, Lambda proxy) would."""

    def __init__(
        self,
        template: Mapping[str, Any],
        ctx: ResolveContext,
        base_dir: Path = REPO_ROOT,
        max_containers: int = MAX_CONTAINERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        apis = resources_of_type(template, "AWS::Serverless::Api")
        self.region = ctx.region
        self.account_id = ctx.account_id
        self.api_id = LOCAL_API_ID
        self.routes = _routes(template, apis)
        api_properties: Mapping[str, Any] = next(iter(apis.values()), {}).get("Properties") or {}
        self.stage = str(api_properties.get("StageName", STAGE))
        self.authorizers = _authorizers(api_properties, ctx)
        self.gateway_responses: Mapping[str, Any] = api_properties.get("GatewayResponses") or {}
        functions = {route.function for route in self.routes} | {spec.function for spec in self.authorizers.values()}
        self.pools = {
            logical_id: FunctionPool(function_spec(template, logical_id, ctx, base_dir), max_containers)
            for logical_id in sorted(functions)
        }
        self._clock = clock
        self._auth_cache: dict[tuple[str, tuple[str, ...]], _AuthResult] = {}
        self._auth_cache_lock = threading.Lock()
        self.access_log = True

    # ------------------------------------------------------------ entry points

    def handle(
        self,
        method: str,
        path: str,
        headers: HeadersInput = None,
        body: bytes = b"",
        query: QueryInput = None,
        *,
        source_ip: str = "127.0.0.1",
    ) -> GatewayResponse:
        """One HTTP request -> (status, headers, body). `path` may carry a query string if `query` is None."""
        raw_path, _, raw_query = path.partition("?")
        request = Request(
            method=method.upper(),
            path=_normalise_path(raw_path),
            headers=Headers(headers.items() if isinstance(headers, Mapping) else headers or ()),
            query=_query(query, raw_query),
            body=body,
            request_id=str(uuid.uuid4()),
            source_ip=source_ip,
            started=time.monotonic(),
        )
        if len(body) > MAX_BODY_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", request)
        found = self._find_route(request.method, request.path)
        if found is None:
            return self._local_page(request) or self.gateway_response("MISSING_AUTHENTICATION_TOKEN", request)
        route, path_parameters = found
        try:
            authorizer = self._authorize(route, request, path_parameters)
        except AuthorizerError as error:
            return self.gateway_response(error.response_type, request, error.message)
        return self._integrate(route, request, path_parameters, authorizer)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> LocalHTTPServer:
        """Start a ThreadingHTTPServer (daemon threads) in a background thread; port 0 picks a free port."""
        server = LocalHTTPServer((host, port), self)
        server.start()
        return server

    def warm(self) -> dict[str, str]:
        """Start one container per function now (in parallel); returns {logical id: error} for those that failed."""
        failures: dict[str, str] = {}

        def warm_one(logical_id: str, pool: FunctionPool) -> None:
            try:
                pool.warm()
            except Exception as error:  # reported to the caller; retried on the first request
                failures[logical_id] = _describe(error)

        threads = [threading.Thread(target=warm_one, args=item, daemon=True) for item in self.pools.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failures

    def close(self) -> None:
        """Stop every container (worker process)."""
        for pool in self.pools.values():
            pool.close()

    def clear_authorizer_cache(self) -> None:
        with self._auth_cache_lock:
            self._auth_cache.clear()

    # ------------------------------------------------------------ routing

    def _find_route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        candidates = []
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            parameters = route.match(path)
            if parameters is not None:
                candidates.append((route.specificity, route.method == "ANY", route, parameters))
        if not candidates:
            return None
        _, _, route, parameters = min(candidates, key=lambda c: (c[0], c[1]))
        return route, parameters

    def method_arn(self, method: str, path: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/{method}{path}"

    # ------------------------------------------------------------ authorizers

    def _authorize(self, route: Route, request: Request, path_parameters: dict[str, str]) -> dict[str, str] | None:
        if route.authorizer is None:
            return None
        spec = self.authorizers[route.authorizer]
        identity = self._identity(spec, request)
        if identity is None:  # API Gateway answers 401 without calling the authorizer
            raise AuthorizerError("UNAUTHORIZED")
        method_arn = self.method_arn(request.method, request.path)
        result = self._cached(spec, identity)
        if result is None:
            event = self._authorizer_event(spec, route, request, path_parameters, method_arn)
            started = time.monotonic()
            result = self._call_authorizer(spec, event)
            latency = int((time.monotonic() - started) * 1000)
            result.context.setdefault("integrationLatency", str(latency))
            self._remember(spec, identity, result)
        if not policy_allows(result.policy, method_arn):
            raise AuthorizerError("ACCESS_DENIED")
        return {**result.context, "principalId": result.principal_id}

    @staticmethod
    def _identity(spec: AuthorizerSpec, request: Request) -> tuple[str, ...] | None:
        values: list[str | None] = [request.headers.get(name) for name in spec.identity_headers]
        values += [(request.query.get(name) or [""])[-1] for name in spec.identity_query]
        if any(not value for value in values):
            return None
        return tuple(str(value) for value in values)

    def _cached(self, spec: AuthorizerSpec, identity: tuple[str, ...]) -> _AuthResult | None:
        if spec.ttl_seconds <= 0:
            return None
        with self._auth_cache_lock:
            result = self._auth_cache.get((spec.name, identity))
            if result is not None and result.expires > self._clock():
                return result
            return None

    def _remember(self, spec: AuthorizerSpec, identity: tuple[str, ...], result: _AuthResult) -> None:
        if spec.ttl_seconds > 0:
            with self._auth_cache_lock:
                self._auth_cache[(spec.name, identity)] = result

    def _call_authorizer(self, spec: AuthorizerSpec, event: dict[str, Any]) -> _AuthResult:
        try:
            answer = self.pools[spec.function].invoke(event)
        except Exception as error:
            if str(error) == "Unauthorized":
                raise AuthorizerError("UNAUTHORIZED") from None
            log.error("authorizer %s failed: %s", spec.name, _describe(error))
            raise AuthorizerError("AUTHORIZER_FAILURE") from None
        if not isinstance(answer, dict) or "principalId" not in answer or "policyDocument" not in answer:
            log.error("authorizer %s returned no principalId/policyDocument: %r", spec.name, answer)
            raise AuthorizerError("AUTHORIZER_CONFIGURATION_ERROR")
        return _AuthResult(
            principal_id=str(answer["principalId"]),
            policy=answer["policyDocument"],
            context=_context_values(answer.get("context")),
            expires=self._clock() + spec.ttl_seconds,
        )

    def _authorizer_event(
        self,
        spec: AuthorizerSpec,
        route: Route,
        request: Request,
        path_parameters: dict[str, str],
        method_arn: str,
    ) -> dict[str, Any]:
        if spec.payload_type == "TOKEN":
            token = request.headers.get(spec.identity_headers[0]) if spec.identity_headers else None
            return {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
        single, multi = _query_maps(request.query)
        return {
            "type": "REQUEST",
            "methodArn": method_arn,
            "resource": route.resource,
            "path": request.path,
            "httpMethod": request.method,
            "headers": dict(_single_headers(request.headers)),
            "multiValueHeaders": _multi_headers(request.headers),
            "queryStringParameters": single,
            "multiValueQueryStringParameters": multi,
            "pathParameters": path_parameters,
            "stageVariables": {},
            "requestContext": self._request_context(route, request, authorizer=None),
        }

    # ------------------------------------------------------------ integration (Lambda proxy)

    def _integrate(
        self,
        route: Route,
        request: Request,
        path_parameters: dict[str, str],
        authorizer: dict[str, str] | None,
    ) -> GatewayResponse:
        event = self.proxy_event(route, request, path_parameters, authorizer)
        try:
            result = self.pools[route.function].invoke(event)
            return self._proxy_response(result, request)
        except Exception as error:
            # On AWS: the function's error goes to its log, the caller gets 502 Internal server error.
            log.error("%s %s: function %s failed: %s", request.method, request.path, route.function, _describe(error))
            return self.gateway_response("DEFAULT_5XX", request)

    def proxy_event(
        self,
        route: Route,
        request: Request,
        path_parameters: dict[str, str],
        authorizer: dict[str, str] | None,
    ) -> dict[str, Any]:
        """The REST API (payload version 1.0) Lambda proxy event."""
        single, multi = _query_maps(request.query)
        body, is_base64 = _event_body(request.body)
        return {
            "resource": route.resource,
            "path": request.path,
            "httpMethod": request.method,
            "headers": dict(_single_headers(request.headers)) or None,
            "multiValueHeaders": _multi_headers(request.headers) or None,
            "queryStringParameters": single or None,
            "multiValueQueryStringParameters": multi or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": self._request_context(route, request, authorizer),
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def _request_context(self, route: Route, request: Request, authorizer: dict[str, str] | None) -> dict[str, Any]:
        now = datetime.now(UTC)
        context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "resourceId": route.event_name,
            "resourcePath": route.resource,
            "httpMethod": request.method,
            "path": f"/{self.stage}{request.path}",
            "stage": self.stage,
            "requestId": request.request_id,
            "extendedRequestId": request.request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "protocol": "HTTP/1.1",
            "domainName": request.headers.get("Host", "localhost"),
            "identity": {"sourceIp": request.source_ip, "userAgent": request.headers.get("User-Agent")},
        }
        if authorizer is not None:
            context["authorizer"] = authorizer
        return context

    def _proxy_response(self, result: Any, request: Request) -> GatewayResponse:
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int | str):
            raise ValueError(f"malformed Lambda proxy response: {result!r}")
        headers = Headers()
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                headers.add(name, str(value))
        for name, value in (result.get("headers") or {}).items():
            if name not in headers:  # multiValueHeaders win for a key present in both
                headers.add(name, str(value))
        headers.setdefault("Content-Type", "application/json")
        headers.add("x-amzn-RequestId", request.request_id)
        body = result.get("body") or ""
        if not isinstance(body, str):
            raise ValueError("Lambda proxy response body must be a string")
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return GatewayResponse(int(result["statusCode"]), headers, payload)

    # ------------------------------------------------------------ gateway responses

    def gateway_response(self, response_type: str, request: Request, message: str | None = None) -> GatewayResponse:
        """API Gateway's own answer, rendered from the template's GatewayResponses (or AWS's default)."""
        default_status, default_message = _RESPONSE_DEFAULTS.get(response_type, (500, "Internal server error"))
        message = message or default_message
        config = self.gateway_responses.get(response_type)
        if config is None:
            config = self.gateway_responses.get("DEFAULT_5XX" if default_status >= 500 else "DEFAULT_4XX") or {}
        status = int(config.get("StatusCode", default_status))
        variables = {
            "$context.requestId": request.request_id,
            "$context.error.messageString": json.dumps(message),
            "$context.error.message": message,
            "$context.error.responseType": response_type,
        }
        template = (config.get("ResponseTemplates") or {}).get(
            "application/json", '{"message":$context.error.messageString}'
        )
        headers = Headers()
        for name, expression in ((config.get("ResponseParameters") or {}).get("Headers") or {}).items():
            value = _header_expression(str(expression), request)
            if value is not None:
                headers.add(name, value)
        headers.setdefault("Content-Type", "application/json")
        headers.add("x-amzn-RequestId", request.request_id)
        headers.add("x-amzn-ErrorType", _error_type(response_type))
        return GatewayResponse(status, headers, _substitute(template, variables).encode())

    # ------------------------------------------------------------ local-only pages (not part of the template)

    def _local_page(self, request: Request) -> GatewayResponse | None:
        if request.method != "GET":
            return None
        if request.path == "/":
            return _local_response(request, "application/json", json.dumps(self.index(), indent=2).encode())
        if request.path == "/docs":
            return _local_response(request, "text/html; charset=utf-8", _docs_page().encode())
        asset = _SWAGGER_ASSETS.get(request.path)
        if asset is not None and asset[1].is_file():
            return _local_response(request, asset[0], asset[1].read_bytes())
        return None

    def index(self) -> dict[str, Any]:
        return {
            "service": "moncore (local stack)",
            "docs": "/docs",
            "openapi": "/v1/openapi.json",
            "admin_openapi": "/admin/v1/openapi.json",
            "health": "/health",
            "routes": [
                {"method": r.method, "path": r.resource, "auth": r.authorizer or "NONE"}
                for r in sorted(self.routes, key=lambda r: (r.resource, r.method))
            ],
        }


# ---------------------------------------------------------------- helpers


def _describe(error: Exception) -> str:
    # A handler's exception arrives from its worker process with the worker's traceback.
    if isinstance(error, FunctionError):
        return f"{error.error_type}: {error}\n{error.trace}"
    return f"{type(error).__name__}: {error}"


def _normalise_path(path: str) -> str:
    path = "/" + path.lstrip("/")
    return path.rstrip("/") or "/"


def _query(query: QueryInput, raw_query: str) -> dict[str, list[str]]:
    if query is None:
        return parse_qs(raw_query, keep_blank_values=True)
    return {name: list(value) if isinstance(value, list) else [value] for name, value in query.items()}


def _query_maps(query: Mapping[str, list[str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    return {name: values[-1] for name, values in query.items()}, {name: list(values) for name, values in query.items()}


def _single_headers(headers: Headers) -> Iterator[tuple[str, str]]:
    for name in headers:
        yield name, headers[name]


def _multi_headers(headers: Headers) -> dict[str, list[str]]:
    return {name: headers.get_all(name) for name in headers}


def _event_body(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def _header_expression(expression: str, request: Request) -> str | None:
    # Gateway response header mappings: a 'quoted literal', a context variable, or a method request header.
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]
    if expression == "context.requestId":
        return request.request_id
    prefix = "method.request.header."
    if expression.startswith(prefix):
        return request.headers.get(expression[len(prefix) :])
    return None


def _substitute(template: str, variables: Mapping[str, str]) -> str:
    # Longest names first so "$context.error.messageString" is not eaten by "$context.error.message".
    for name in sorted(variables, key=len, reverse=True):
        template = template.replace(name, variables[name])
    return template


def _error_type(response_type: str) -> str:
    return {
        "UNAUTHORIZED": "UnauthorizedException",
        "ACCESS_DENIED": "AccessDeniedException",
        "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
        "REQUEST_TOO_LARGE": "RequestTooLargeException",
    }.get(response_type, "InternalServerErrorException")


def _local_response(request: Request, content_type: str, body: bytes) -> GatewayResponse:
    headers = Headers([("Content-Type", content_type), ("X-Correlation-Id", request.request_id)])
    return GatewayResponse(200, headers, body)


def _swagger_dir() -> Path:
    spec = importlib.util.find_spec("aws_lambda_powertools")
    if spec is None or spec.origin is None:
        return Path("/nonexistent")
    return Path(spec.origin).parent / "event_handler" / "openapi" / "swagger_ui"


_SWAGGER_ASSETS = {
    "/docs/swagger-ui.css": ("text/css", _swagger_dir() / "swagger-ui.min.css"),
    "/docs/swagger-ui-bundle.js": ("application/javascript", _swagger_dir() / "swagger-ui-bundle.min.js"),
}


def _docs_page() -> str:
    # Served offline from powertools' bundled Swagger UI; ?spec=admin switches to the admin plane's document.
    return """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>MonCore API (local)</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <style>nav { font-family: sans-serif; padding: 8px 16px; } nav a { margin-right: 16px; }</style>
</head>
<body>
  <nav><a href="/docs">Partner API /v1</a><a href="/docs?spec=admin">Admin API /admin/v1</a></nav>
  <div id="swagger-ui">Loading...</div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    var admin = new URLSearchParams(window.location.search).get("spec") === "admin";
    window.ui = SwaggerUIBundle({
      url: admin ? "/admin/v1/openapi.json" : "/v1/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


# ---------------------------------------------------------------- HTTP server


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections
    server: LocalHTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        gateway = self.server.gateway
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Refuse without reading 10+ MiB; the connection cannot be reused with an unread body.
            self.close_connection = True
            self._write(gateway.gateway_response("REQUEST_TOO_LARGE", _bare_request(self)))
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        self._write(
            gateway.handle(self.command, self.path, self.headers.items(), body, source_ip=self.client_address[0])
        )

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: GatewayResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers.pairs():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.gateway.access_log:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _bare_request(handler: BaseHTTPRequestHandler) -> Request:
    return Request(
        method=handler.command,
        path=handler.path.partition("?")[0],
        headers=Headers(handler.headers.items()),
        query={},
        body=b"",
        request_id=str(uuid.uuid4()),
        source_ip=handler.client_address[0],
        started=time.monotonic(),
    )


class LocalHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer for a LocalGateway, serving from a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: LocalGateway) -> None:
        super().__init__(address, _RequestHandler)
        self.gateway = gateway
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="local-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
