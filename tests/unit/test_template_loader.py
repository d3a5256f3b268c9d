"""The local stack's template reader: CloudFormation short tags, intrinsic resolution, derived table/env settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.environment import function_environment, global_variables
from infra.resources import generate_secret_string, table_request
from infra.template import (
    ResolveContext,
    TemplateError,
    evaluate_conditions,
    load_template,
    parameter_values,
    resolve,
)

SHORT_TAGS = """
Parameters:
  Env: {Type: String, AllowedValues: [a, b]}
  Ttl: {Type: Number, Default: 300}
Conditions:
  IsA: !Equals [!Ref Env, a]
  NotA: !Not [!Condition IsA]
Resources:
  Thing:
    Type: AWS::Serverless::Function
    Properties:
      Ref: !Ref Env
      Att: !GetAtt Table.Arn
      AttList: !GetAtt [Table, StreamArn]
      Sub: !Sub "x-${Env}-${AWS::Region}"
      SubList: !Sub
        - "${Name}-${Table.Arn}"
        - {Name: !Ref Ttl}
      Join: !Join ["/", [a, !Ref Env]]
      Select: !Select [1, !Split [",", "p,q,r"]]
      If: !If [IsA, yes-a, not-a]
      Flow: {Path: "/v1/users/{user_id}", Method: GET}
"""


@pytest.fixture
def short_tags(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "template.yaml"
    path.write_text(SHORT_TAGS)
    return load_template(path)


def _ctx(template: dict[str, object], **overrides: str) -> ResolveContext:
    ctx = ResolveContext(parameter_values(template, overrides))
    ctx.refs["Table"] = "the-table"
    ctx.attributes["Table"] = {"Arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/the-table", "StreamArn": "s-arn"}
    evaluate_conditions(template, ctx)
    return ctx


def test_short_tags_become_long_forms(short_tags: dict[str, object]) -> None:
    properties = short_tags["Resources"]["Thing"]["Properties"]  # type: ignore[index]
    assert properties["Ref"] == {"Ref": "Env"}
    assert properties["Att"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert properties["AttList"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert properties["Sub"] == {"Fn::Sub": "x-${Env}-${AWS::Region}"}
    assert properties["SubList"] == {"Fn::Sub": ["${Name}-${Table.Arn}", {"Name": {"Ref": "Ttl"}}]}
    assert properties["Join"] == {"Fn::Join": ["/", ["a", {"Ref": "Env"}]]}
    assert properties["If"] == {"Fn::If": ["IsA", "yes-a", "not-a"]}
    assert properties["Flow"] == {"Path": "/v1/users/{user_id}", "Method": "GET"}
    assert short_tags["Conditions"]["NotA"] == {"Fn::Not": [{"Condition": "IsA"}]}  # type: ignore[index]


def test_resolve_ref_sub_getatt_join_select_if(short_tags: dict[str, object]) -> None:
    ctx = _ctx(short_tags, Env="a")
    resolved = resolve(short_tags["Resources"]["Thing"]["Properties"], ctx)  # type: ignore[index]
    assert resolved["Ref"] == "a"
    assert resolved["Att"] == "arn:aws:dynamodb:eu-west-1:123456789012:table/the-table"
    assert resolved["AttList"] == "s-arn"
    assert resolved["Sub"] == "x-a-eu-west-1"
    assert resolved["SubList"] == "300-arn:aws:dynamodb:eu-west-1:123456789012:table/the-table"
    assert resolved["Join"] == "a/a"
    assert resolved["Select"] == "q"
    assert resolved["If"] == "yes-a"
    assert _ctx(short_tags, Env="b").conditions == {"IsA": False, "NotA": True}


def test_sub_literal_escape_and_pseudo_parameters() -> None:
    ctx = ResolveContext({})
    assert resolve({"Fn::Sub": "${!Literal}-${AWS::AccountId}"}, ctx) == "${Literal}-123456789012"
    assert resolve({"Fn::Sub": "arn:${AWS::Partition}:s3:::b.${AWS::URLSuffix}"}, ctx) == "arn:aws:s3:::b.amazonaws.com"


def test_no_value_removes_the_key() -> None:
    assert resolve({"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}]}, ResolveContext({})) == {"B": [1]}


def test_unresolved_reference_raises() -> None:
    with pytest.raises(TemplateError, match="Missing"):
        resolve({"Ref": "Missing"}, ResolveContext({}))
    with pytest.raises(TemplateError, match=r"Missing\.Arn"):
        resolve({"Fn::GetAtt": ["Missing", "Arn"]}, ResolveContext({}))


def test_parameters_defaults_overrides_and_validation(short_tags: dict[str, object]) -> None:
    assert parameter_values(short_tags, {"Env": "b"}) == {"Env": "b", "Ttl": "300"}
    assert parameter_values(short_tags, {"Env": "a", "Ttl": "0"})["Ttl"] == "0"
    with pytest.raises(TemplateError, match="no Default"):
        parameter_values(short_tags)
    with pytest.raises(TemplateError, match="not one of"):
        parameter_values(short_tags, {"Env": "c"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        parameter_values(short_tags, {"Env": "a", "Nope": "1"})


# ---------------------------------------------------------------- the real template.yaml


def _real_ctx(template_path: Path) -> tuple[dict[str, Any], ResolveContext]:
    template = load_template(template_path)
    ctx = ResolveContext(parameter_values(template, {"EnvironmentName": "sandbox"}))
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            ctx.refs[logical_id] = resolve(resource["Properties"]["TableName"], ctx)
    ctx.refs.update({"ApiKeyPepperSecret": "secret-arn", "EvidenceBucket": "bucket", "SigningKey": "key-id"})
    ctx.refs["WebhookSigningSecrets"] = "webhook-secrets-arn"
    ctx.refs["ExportsStateMachine"] = "exports-state-machine-arn"  # the partner and admin APIs start exports
    return template, ctx


def test_real_template_loads_and_names_resources(template_path: Path) -> None:
    template, ctx = _real_ctx(template_path)
    bucket = template["Resources"]["EvidenceBucket"]["Properties"]
    assert resolve(bucket["BucketName"], ctx) == "moncore-sandbox-evidence-123456789012-eu-west-1"
    key_policy = resolve(template["Resources"]["SigningKey"]["Properties"]["KeyPolicy"], ctx)
    assert key_policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


def test_real_template_function_environment(template_path: Path) -> None:
    template, ctx = _real_ctx(template_path)
    shared = global_variables(template, ctx)
    assert shared["MONCORE_LEDGER_TABLE"] == "moncore-sandbox-ledger"
    assert shared["MONCORE_API_KEY_PEPPER_SECRET"] == "secret-arn"
    assert shared["MONCORE_IDEMPOTENCY_TTL_SECONDS"] == "86400"
    environment = function_environment(template, "PartnerApiFunction", ctx)
    assert environment["POWERTOOLS_SERVICE_NAME"] == "partner-api"
    assert environment["MONCORE_TENANTS_TABLE"] == "moncore-sandbox-tenants"
    assert environment["MONCORE_EXPORTS_STATE_MACHINE_ARN"] == "exports-state-machine-arn"


def test_table_request_keeps_schema_and_drops_what_dynamodb_local_rejects(template_path: Path) -> None:
    template, ctx = _real_ctx(template_path)
    ledger = resolve(template["Resources"]["LedgerTable"]["Properties"], ctx)
    request = table_request(ledger)
    assert request["TableName"] == "moncore-sandbox-ledger"
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert request["KeySchema"] == ledger["KeySchema"]
    assert request["AttributeDefinitions"] == ledger["AttributeDefinitions"]
    assert request["GlobalSecondaryIndexes"][0]["IndexName"] == "by_account"
    assert request["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    for dropped in ("DeletionProtectionEnabled", "PointInTimeRecoverySpecification", "SSESpecification"):
        assert dropped not in request


def test_generate_secret_string_follows_the_template_options() -> None:
    value = generate_secret_string({"PasswordLength": 64, "ExcludePunctuation": True})
    assert len(value) == 64
    assert value.isalnum()
    assert "x" not in generate_secret_string({"PasswordLength": 200, "ExcludeCharacters": "x"})
