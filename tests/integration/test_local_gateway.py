"""The local API Gateway: routing, proxy events, authorizers (policy, cache), gateway responses, Lambda containers.

A tiny template and handlers written to tmp_path stand in for the real functions; the gateway responses are copied
from the real template.yaml, so the problem+json bodies asserted here are the ones partners get. No DynamoDB needed.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.gateway import MAX_BODY_BYTES, GatewayResponse, LocalGateway, policy_allows
from infra.resources import name_resources
from infra.template import ResolveContext, load_template, parameter_values

FAKE_TEMPLATE = """
Parameters:
  EnvironmentName: {Type: String, Default: test}
  AuthorizerCacheTtlSeconds: {Type: Number, Default: 300}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables:
        SHARED_SETTING: !Sub "shared-${EnvironmentName}"
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: api
      Auth:
        DefaultAuthorizer: KeyAuthorizer
        Authorizers:
          KeyAuthorizer:
            FunctionPayloadType: REQUEST
            FunctionArn: !GetAtt AuthFunction.Arn
            Identity:
              Headers: [Authorization]
              ReauthorizeEvery: !Ref AuthorizerCacheTtlSeconds
  AuthFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${EnvironmentName}-auth"
      CodeUri: auth/
      Handler: app.lambda_handler
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${EnvironmentName}-echo"
      CodeUri: echo/
      Handler: app.lambda_handler
      Environment:
        Variables:
          POWERTOOLS_SERVICE_NAME: echo
      Events:
        GetThing: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/v1/things/{thing_id}", Method: GET}}
        GetSpecial: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /v1/things/special, Method: GET}}
        PostThing: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /v1/things, Method: POST}}
        Public: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /public, Method: GET, Auth: {Authorizer: NONE}}}
        Crash: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /crash, Method: GET, Auth: {Authorizer: NONE}}}
        Slow: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /slow, Method: GET, Auth: {Authorizer: NONE}}}
"""

AUTH_HANDLER = """
import json

CALLS = {calls!r}
ARN = "arn:aws:execute-api:eu-west-1:123456789012:localapi/api"


def policy(effect, resource):
    return {{"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource}}


def lambda_handler(event, context):
    with open(CALLS, "a") as calls:
        calls.write(json.dumps(event) + "\\n")
    token = event["headers"]["Authorization"].removeprefix("Bearer ")
    if token == "bad":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("authorizer bug")
    statements = {{
        "allow": [policy("Allow", ARN + "/*")],
        "deny": [policy("Deny", ARN + "/*")],
        "things-only": [policy("Allow", ARN + "/GET/v1/things/*")],
        "no-special": [policy("Allow", ARN + "/*"), policy("Deny", ARN + "/GET/v1/things/specia?")],
    }}[token]
    return {{
        "principalId": "p-" + token,
        "policyDocument": {{"Version": "2012-10-17", "Statement": statements}},
        "context": {{"tenant_id": "t-1", "live": True, "limit": 3}},
    }}
"""

ECHO_HANDLER = """
import base64
import json
import os
import threading
import time

SERVICE_AT_IMPORT = os.environ.get("POWERTOOLS_SERVICE_NAME")


def lambda_handler(event, context):
    if event["resource"] == "/crash":
        raise RuntimeError("handler bug")
    if event["resource"] == "/slow":
        time.sleep(0.5)
    body = event["body"]
    seen = {
        "pid": os.getpid(),
        "resource": event["resource"],
        "path": event["path"],
        "method": event["httpMethod"],
        "pathParameters": event["pathParameters"],
        "query": event["queryStringParameters"],
        "multiQuery": event["multiValueQueryStringParameters"],
        "requestContext": event["requestContext"],
        "body_length": len(base64.b64decode(body) if event["isBase64Encoded"] else (body or "").encode()),
        "isBase64Encoded": event["isBase64Encoded"],
        "service_at_import": SERVICE_AT_IMPORT,
        "shared_setting": os.environ.get("SHARED_SETTING"),
        "function_name": context.function_name,
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Correlation-Id": "corr-1"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(seen),
    }
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_api(tmp_path: Path, template_path: Path) -> Path:
    """A template + handlers in tmp_path, with the real template's GatewayResponses."""
    real = load_template(template_path)
    responses = real["Resources"]["MonCoreApi"]["Properties"]["GatewayResponses"]
    text = FAKE_TEMPLATE.replace(
        "      Auth:\n        Default", "      GatewayResponses: RESPONSES\n      Auth:\n        Default"
    )
    text = text.replace("RESPONSES", json.dumps(responses))
    (tmp_path / "template.yaml").write_text(text)
    for name, source in (("auth", AUTH_HANDLER.format(calls=str(tmp_path / "calls.jsonl"))), ("echo", ECHO_HANDLER)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(textwrap.dedent(source))
    return tmp_path


MakeGateway = Callable[..., LocalGateway]


@pytest.fixture
def make_gateway(fake_api: Path) -> Iterator[MakeGateway]:
    def make(ttl: int = 0, clock: Callable[[], float] = time.monotonic, max_containers: int = 8) -> LocalGateway:
        template = load_template(fake_api / "template.yaml")
        ctx = ResolveContext(parameter_values(template, {"AuthorizerCacheTtlSeconds": str(ttl)}))
        name_resources(template, ctx)  # the fake template has no tables: names are all it needs
        gateway = LocalGateway(template, ctx, base_dir=fake_api, clock=clock, max_containers=max_containers)
        gateway.access_log = False
        made.append(gateway)
        return gateway

    made: list[LocalGateway] = []
    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def gateway(make_gateway: MakeGateway) -> LocalGateway:
    return make_gateway()


def authorizer_calls(fake_api: Path) -> list[dict[str, Any]]:
    calls = fake_api / "calls.jsonl"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def get(gateway: LocalGateway, path: str, token: str | None = "allow", **kwargs: Any) -> GatewayResponse:
    headers = {"Host": "localhost"} | ({"Authorization": f"Bearer {token}"} if token else {})
    return gateway.handle("GET", path, headers, **kwargs)


def assert_problem(response: GatewayResponse, status: int, code: str) -> None:
    assert response.status == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert response.headers["X-Correlation-Id"] == response.headers["x-amzn-RequestId"]


# ---------------------------------------------------------------- routing and proxy events


def test_routes_path_parameters_and_proxy_event(gateway: LocalGateway) -> None:
    response = get(gateway, "/v1/things/abc%20d?x=1&y=2&y=3")
    assert response.status == 200
    seen = response.json()
    assert seen["resource"] == "/v1/things/{thing_id}"
    assert seen["pathParameters"] == {"thing_id": "abc d"}
    assert seen["query"] == {"x": "1", "y": "3"}
    assert seen["multiQuery"] == {"x": ["1"], "y": ["2", "3"]}
    context = seen["requestContext"]
    assert context["resourcePath"] == "/v1/things/{thing_id}"
    assert context["stage"] == "api"
    assert context["path"] == "/api/v1/things/abc%20d"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert seen["function_name"] == "test-echo"
    assert response.headers["X-Correlation-Id"] == "corr-1"
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_literal_segment_beats_path_parameter(gateway: LocalGateway) -> None:
    assert get(gateway, "/v1/things/special", token="allow").json()["resource"] == "/v1/things/special"


def test_unknown_route_or_method_is_the_templates_404(gateway: LocalGateway) -> None:
    assert_problem(get(gateway, "/v1/nothing"), 404, "not_found")
    assert_problem(gateway.handle("DELETE", "/v1/things/1", {"Authorization": "Bearer allow"}), 404, "not_found")


def test_body_text_and_binary(gateway: LocalGateway) -> None:
    headers = {"Authorization": "Bearer allow"}
    text = gateway.handle("POST", "/v1/things", headers, '{"a": "é"}'.encode()).json()
    assert (text["isBase64Encoded"], text["body_length"]) == (False, len('{"a": "é"}'.encode()))
    binary = gateway.handle("POST", "/v1/things", headers, b"\xff\xfe\x00").json()
    assert (binary["isBase64Encoded"], binary["body_length"]) == (True, 3)


def test_request_too_large_is_413(gateway: LocalGateway) -> None:
    headers = {"Authorization": "Bearer allow"}
    assert gateway.handle("POST", "/v1/things", headers, b"x" * MAX_BODY_BYTES).status == 200
    assert_problem(gateway.handle("POST", "/v1/things", headers, b"x" * (MAX_BODY_BYTES + 1)), 413, "payload_too_large")


def test_handler_crash_is_a_5xx_problem(gateway: LocalGateway) -> None:
    response = get(gateway, "/crash", token=None)
    assert response.status == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unavailable"
    assert response.headers["X-Correlation-Id"]


# ---------------------------------------------------------------- authorizers


def test_missing_authorization_is_401_without_calling_the_authorizer(gateway: LocalGateway, fake_api: Path) -> None:
    assert_problem(get(gateway, "/v1/things/1", token=None), 401, "unauthorized")
    assert authorizer_calls(fake_api) == []


def test_public_route_needs_no_key(gateway: LocalGateway, fake_api: Path) -> None:
    response = get(gateway, "/public", token=None)
    assert response.status == 200
    assert "authorizer" not in response.json()["requestContext"]
    assert authorizer_calls(fake_api) == []


def test_authorizer_unauthorized_is_401_and_failure_is_500(gateway: LocalGateway) -> None:
    assert_problem(get(gateway, "/v1/things/1", token="bad"), 401, "unauthorized")
    failure = get(gateway, "/v1/things/1", token="boom")
    assert failure.status == 500
    assert failure.headers["content-type"] == "application/problem+json"


def test_authorizer_event_and_context(gateway: LocalGateway, fake_api: Path) -> None:
    seen = get(gateway, "/v1/things/42?q=1").json()
    authorizer = seen["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "p-allow"
    # API Gateway hands context values on as strings
    assert (authorizer["tenant_id"], authorizer["live"], authorizer["limit"]) == ("t-1", "true", "3")
    (event,) = authorizer_calls(fake_api)
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:eu-west-1:123456789012:localapi/api/GET/v1/things/42"
    assert event["resource"] == "/v1/things/{thing_id}"
    assert event["pathParameters"] == {"thing_id": "42"}
    assert event["queryStringParameters"] == {"q": "1"}
    assert event["headers"]["Authorization"] == "Bearer allow"


def test_policy_evaluation(gateway: LocalGateway) -> None:
    assert_problem(get(gateway, "/v1/things/1", token="deny"), 403, "forbidden")
    assert get(gateway, "/v1/things/1", token="things-only").status == 200
    post = gateway.handle("POST", "/v1/things", {"Authorization": "Bearer things-only"}, b"{}")
    assert_problem(post, 403, "forbidden")
    assert get(gateway, "/v1/things/1", token="no-special").status == 200
    assert_problem(get(gateway, "/v1/things/special", token="no-special"), 403, "forbidden")


def test_policy_allows_wildcards_and_explicit_deny() -> None:
    arn = "arn:aws:execute-api:eu-west-1:123456789012:localapi/api/GET/v1/users/1"
    allow = {"Effect": "Allow", "Action": "execute-api:*", "Resource": ["arn:aws:execute-api:*:*:localapi/api/GET/*"]}
    deny = {"Effect": "Deny", "Action": ["execute-api:Invoke"], "Resource": "*/v1/users/?"}
    assert policy_allows({"Statement": [allow]}, arn)
    assert policy_allows({"Statement": allow}, arn)  # a single statement may be a mapping
    assert not policy_allows({"Statement": [allow, deny]}, arn)
    assert not policy_allows({"Statement": []}, arn)
    assert not policy_allows({"Statement": [{**allow, "Action": "s3:*"}]}, arn)


def test_authorizer_cache_honours_ttl(make_gateway: MakeGateway, fake_api: Path) -> None:
    clock = FakeClock()
    gateway = make_gateway(ttl=300, clock=clock)
    assert get(gateway, "/v1/things/1", token="things-only").status == 200
    assert get(gateway, "/v1/things/2", token="things-only").status == 200
    assert len(authorizer_calls(fake_api)) == 1
    # the cached policy is evaluated against each new method ARN, as on AWS
    post = gateway.handle("POST", "/v1/things", {"Authorization": "Bearer things-only"}, b"{}")
    assert post.status == 403
    assert len(authorizer_calls(fake_api)) == 1
    clock.now += 301
    assert get(gateway, "/v1/things/1", token="things-only").status == 200
    assert len(authorizer_calls(fake_api)) == 2


def test_authorizer_cache_off_with_ttl_zero(make_gateway: MakeGateway, fake_api: Path) -> None:
    gateway = make_gateway(ttl=0)
    for _ in range(3):
        assert get(gateway, "/v1/things/1").status == 200
    assert len(authorizer_calls(fake_api)) == 3


# ---------------------------------------------------------------- Lambda emulation


def test_function_environment_is_lambdas(gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARED_SETTING", "shared-test")  # what LocalBackend puts in os.environ for the Globals
    seen = get(gateway, "/public", token=None).json()
    assert seen["service_at_import"] == "echo"
    assert seen["shared_setting"] == "shared-test"
    assert os.environ.get("POWERTOOLS_SERVICE_NAME") != "echo"  # the function's own variables stay in its container


def test_concurrent_requests_get_their_own_containers(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(max_containers=3)
    gateway.pools["EchoFunction"].warm()
    results: list[GatewayResponse] = []

    def call() -> None:
        results.append(get(gateway, "/slow", token=None))

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == [200] * 6
    assert len({r.json()["pid"] for r in results}) == 3  # three containers (worker processes)
    assert gateway.pools["EchoFunction"].size == 3
    assert elapsed < 6 * 0.5  # 6 requests x 0.5 s over 3 containers: about 1 s, never serial


# ---------------------------------------------------------------- local pages and HTTP


def test_docs_and_index(gateway: LocalGateway) -> None:
    docs = get(gateway, "/docs", token=None)
    assert docs.status == 200
    assert "/v1/openapi.json" in docs.text
    assert get(gateway, "/docs/swagger-ui-bundle.js", token=None).status == 200
    index = get(gateway, "/", token=None).json()
    assert {"method": "GET", "path": "/public", "auth": "NONE"} in index["routes"]


def test_serves_http(gateway: LocalGateway) -> None:
    server = gateway.serve("127.0.0.1", 0)
    try:
        response = requests.get(f"{server.url}/v1/things/7", headers={"Authorization": "Bearer allow"}, timeout=10)
        assert response.status_code == 200
        assert response.json()["pathParameters"] == {"thing_id": "7"}
        missing = requests.get(f"{server.url}/v1/things/7", timeout=10)
        assert missing.status_code == 401
        assert missing.headers["Content-Type"] == "application/problem+json"
        too_large = requests.post(f"{server.url}/v1/things", data=b"x" * (MAX_BODY_BYTES + 1), timeout=30)
        assert too_large.status_code == 413
    finally:
        server.stop()


# ---------------------------------------------------------------- the real template's routes


def test_real_template_routes_and_authorizers(template_path: Path) -> None:
    template = load_template(template_path)
    ctx = ResolveContext(parameter_values(template, {"EnvironmentName": "sandbox"}))
    name_resources(template, ctx)  # routes need no tables; handlers are not imported until a request
    routes = {(r.method, r.resource): r.authorizer for r in LocalGateway(template, ctx).routes}
    assert routes[("POST", "/admin/v1/tenants")] == "AdminAuthorizer"
    assert routes[("GET", "/v1/users/{user_id}")] == "TenantAuthorizer"
    assert routes[("GET", "/health")] is None
    assert routes[("GET", "/v1/openapi.json")] is None
