"""Static guarantees of template.yaml (DESIGN.md sections 3 and 5), checked by reading the template itself.

Each check is a function that returns a list of violations (empty = fine). The `test_*_holds` tests run them on
template.yaml; the mutation tests at the bottom break a copy of the template in the ways the checks exist to catch and
assert that each check notices, so no check can silently pass everything.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.infrastructure, pytest.mark.xdist_group("infrastructure")]

Template = dict[str, Any]

APPEND_ONLY_TABLES = (
    "LedgerTable",
    "GuardsTable",
    "AuditTable",
    "ExceptionsTable",
    "AmlEventsTable",
    "SettlementsTable",
    "ReconciliationsTable",
    "SealsTable",
    "ExportsTable",
)
# Every function role must carry an explicit Deny of these on the append-only tables (DESIGN.md invariant 3).
REQUIRED_DENY_ACTIONS = ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
# No Allow may grant any of these on an append-only table (PartiQL UPDATE/DELETE are the same writes by another API).
FORBIDDEN_ALLOW_ACTIONS = (*REQUIRED_DENY_ACTIONS, "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")
# SAM policy templates that grant no item writes; every other template naming an append-only table is refused
# (DynamoDBCrudPolicy and DynamoDBWritePolicy grant UpdateItem/DeleteItem/BatchWriteItem, DynamoDBReconfigurePolicy
# grants UpdateTable, which can switch deletion protection and PITR off).
READ_ONLY_POLICY_TEMPLATES = frozenset({"DynamoDBReadPolicy", "DynamoDBStreamReadPolicy"})
# The AWS managed policy SAM attaches to a function with a DynamoDB stream event source (the seal trigger,
# docs/audit.md): dynamodb:DescribeStream, GetRecords, GetShardIterator, ListStreams and CloudWatch Logs; no item
# writes.
STREAM_READ_MANAGED_POLICIES = frozenset({"AWSLambdaDynamoDBExecutionRole"})
POLICY_BEARING_TYPES = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy")

# Properties that only name or describe a resource: the only places EnvironmentName may appear (invariant 11).
NAME_PROPERTIES = frozenset(
    {
        "Name",
        "Description",
        "TableName",
        "FunctionName",
        "LayerName",
        "BucketName",
        "StackName",
        "StateMachineName",
        "ScheduleName",
        "ScheduleGroupName",
        "RoleName",
        "PolicyName",
        "ManagedPolicyName",
        "AliasName",
        "TopicName",
        "QueueName",
        "LogGroupName",
        "RuleName",
        "EventBusName",
    }
)

API_ID = "MonCoreApi"
ROUTE_PREFIXES = ("/v1/", "/admin/v1/", "/webhooks/")
PUBLIC_PATHS = frozenset({"/health", "/v1/openapi.json", "/admin/v1/openapi.json", "/docs"})
# Provider webhooks carry no API key (Authorizer NONE): each delivery is authenticated by its HMAC signature in the
# handler. Only the dedicated webhooks function, whose role reaches no ledger or balance, may serve them.
WEBHOOK_PREFIX = "/webhooks/"
WEBHOOK_FUNCTIONS = frozenset({"WebhooksFunction"})
AUTHORIZER_FUNCTIONS = {"TenantAuthorizer": "TenantAuthorizerFunction", "AdminAuthorizer": "AdminAuthorizerFunction"}


# ---------------------------------------------------------------- intrinsic helpers
def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    return key in ("Ref", "Condition") or key.startswith("Fn::")


_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def sub_variables(text: str) -> list[str]:
    """`${Name}` / `${Resource.Attribute}` references in a Fn::Sub string (`${!Literal}` excluded)."""
    return [match.strip() for match in _SUB_VARIABLE.findall(text)]


def referenced_ids(value: Any) -> set[str]:
    """Logical ids and parameters referenced in value (Ref, Fn::GetAtt, Fn::Sub); pseudo parameters excluded."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= referenced_ids(item)
    elif isinstance(value, dict):
        if is_intrinsic(value):
            ((name, arg),) = value.items()
            if name == "Ref" and isinstance(arg, str):
                found.add(arg)
                return {ref for ref in found if not ref.startswith("AWS::")}
            if name == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                found.add(target)
                return found
            if name == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = set(variables)
                for variable in sub_variables(text):
                    target = variable.split(".", 1)[0]
                    if target not in local:
                        found.add(target)
                for item in variables.values():
                    found |= referenced_ids(item)
                return {ref for ref in found if not ref.startswith("AWS::")}
        for item in value.values():
            found |= referenced_ids(item)
    return {ref for ref in found if not ref.startswith("AWS::")}


def resources(template: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template.get("Resources", {}).items() if not types or res.get("Type") in types}


def literal_text(value: Any) -> str | None:
    """The literal text of a plain string or of a Fn::Sub / Fn::Join of strings (for managed policy names)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        arg = value["Fn::Sub"]
        return arg if isinstance(arg, str) else arg[0]
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(str(part) for part in value["Fn::Join"][1] if isinstance(part, str))
    return None


# ---------------------------------------------------------------- (a) append-only tables in IAM
def action_matches(pattern: Any, action: str) -> bool:
    if not isinstance(pattern, str):
        return True  # computed action: cannot prove it is harmless
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def granted_forbidden_actions(statement: dict[str, Any]) -> list[str]:
    if "NotAction" in statement:
        excluded = as_list(statement["NotAction"])
        return [a for a in FORBIDDEN_ALLOW_ACTIONS if not any(action_matches(p, a) for p in excluded)]
    patterns = as_list(statement.get("Action"))
    return [a for a in FORBIDDEN_ALLOW_ACTIONS if any(action_matches(p, a) for p in patterns)]


def may_cover_append_only(resource: Any, known_ids: set[str]) -> bool:
    """True unless the resource provably names only other template resources.

    Literal ARNs, wildcards and ARNs built from parameters only cannot be told apart from an append-only table, so
    they count as covering one: grant writes through references to the exact (mutable) tables instead.
    """
    if isinstance(resource, str):
        return True
    ids = referenced_ids(resource) & known_ids
    return not ids or bool(ids & set(APPEND_ONLY_TABLES))


def allow_statement_violations(where: str, statements: Any, known_ids: set[str]) -> list[str]:
    problems = []
    for index, statement in enumerate(as_list(statements)):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = granted_forbidden_actions(statement)
        if not actions:
            continue
        sid = statement.get("Sid", f"#{index}")
        if "NotResource" in statement:
            problems.append(f"{where} statement {sid}: Allow {actions} with NotResource covers the append-only tables")
            continue
        covering = [r for r in as_list(statement.get("Resource")) if may_cover_append_only(r, known_ids)]
        if covering:
            problems.append(f"{where} statement {sid}: Allow {actions} on {json.dumps(covering)}")
    return problems


def managed_policy_violation(where: str, policy: Any) -> list[str]:
    text = literal_text(policy)
    if text is None:
        return []
    name = text.rsplit("/", 1)[-1]
    if name in STREAM_READ_MANAGED_POLICIES:
        return []
    if name in ("AdministratorAccess", "PowerUserAccess") or ("DynamoDB" in name and "ReadOnly" not in name):
        return [f"{where}: managed policy {text!r} may write to the append-only tables"]
    return []


def policy_template_violation(where: str, name: str, parameters: Any, known_ids: set[str]) -> list[str]:
    if name in READ_ONLY_POLICY_TEMPLATES:
        return []
    targets = referenced_ids(parameters) & set(APPEND_ONLY_TABLES)
    if targets:
        return [f"{where}: SAM policy template {name} on append-only {sorted(targets)}"]
    if name.startswith("DynamoDB") and may_cover_append_only(parameters, known_ids):
        return [f"{where}: SAM policy template {name} on a table that is not a reference to a mutable table"]
    return []


def sam_policies_violations(where: str, policies: Any, known_ids: set[str]) -> list[str]:
    problems = []
    for item in as_list(policies):
        if isinstance(item, dict) and "Statement" in item:
            problems += allow_statement_violations(where, item["Statement"], known_ids)
        elif isinstance(item, dict) and not is_intrinsic(item):
            for name, parameters in item.items():
                problems += policy_template_violation(where, name, parameters, known_ids)
        else:  # a managed policy: name, ARN, or a Ref to an AWS::IAM::ManagedPolicy (checked on its own)
            problems += managed_policy_violation(where, item)
    return problems


def append_only_allow_violations(template: Template) -> list[str]:
    """No Allow anywhere grants UpdateItem/DeleteItem/BatchWriteItem (or dynamodb:*) on an append-only table."""
    known_ids = set(resources(template))
    problems = []
    for lid, res in resources(template).items():
        props = res.get("Properties") or {}
        if res.get("Type") in POLICY_BEARING_TYPES:
            problems += sam_policies_violations(lid, props.get("Policies"), known_ids)
        elif res.get("Type") == "AWS::IAM::Role":
            for policy in as_list(props.get("Policies")):
                where = f"{lid}/{policy.get('PolicyName', '?')}"
                problems += allow_statement_violations(
                    where, policy.get("PolicyDocument", {}).get("Statement"), known_ids
                )
            for arn in as_list(props.get("ManagedPolicyArns")):
                problems += managed_policy_violation(lid, arn)
        elif res.get("Type") in IAM_POLICY_TYPES:
            problems += allow_statement_violations(lid, props.get("PolicyDocument", {}).get("Statement"), known_ids)
    return problems


def names_table_arn(resource: Any, table: str) -> bool:
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        arg = resource["Fn::GetAtt"]
        return (arg if isinstance(arg, list) else str(arg).split(".", 1)) == [table, "Arn"]
    if isinstance(resource, dict) and "Fn::Sub" in resource and isinstance(resource["Fn::Sub"], str):
        return resource["Fn::Sub"].strip() == "${" + table + ".Arn}"
    return False


def deny_gaps(statements: Any) -> list[str]:
    """(action, table) pairs not covered by an unconditional explicit Deny among statements."""
    gaps = []
    denies = [
        s
        for s in as_list(statements)
        if isinstance(s, dict) and s.get("Effect") == "Deny" and "Condition" not in s and "Action" in s
    ]
    for table in APPEND_ONLY_TABLES:
        for action in REQUIRED_DENY_ACTIONS:
            if not any(
                any(action_matches(p, action) for p in as_list(s["Action"]))
                and any(names_table_arn(r, table) for r in as_list(s.get("Resource")))
                for s in denies
            ):
                gaps.append(f"{action} on {table}")
    return gaps


def inline_statements(policies: Any) -> list[Any]:
    return [
        s
        for item in as_list(policies)
        if isinstance(item, dict) and "Statement" in item
        for s in as_list(item["Statement"])
    ]


def role_statements(role: dict[str, Any]) -> list[Any]:
    return [
        s
        for policy in as_list((role.get("Properties") or {}).get("Policies"))
        for s in as_list(policy.get("PolicyDocument", {}).get("Statement"))
    ]


def function_deny_violations(template: Template) -> list[str]:
    """Every function's role explicitly denies UpdateItem/DeleteItem/BatchWriteItem on every append-only table."""
    problems = []
    all_resources = resources(template)
    functions = resources(template, "AWS::Serverless::Function", "AWS::Lambda::Function")
    if not functions:
        return ["template declares no functions"]
    for lid, res in functions.items():
        props = res.get("Properties") or {}
        if "Role" in props:
            role_ids = referenced_ids(props["Role"]) & set(all_resources)
            roles = [all_resources[r] for r in role_ids if all_resources[r].get("Type") == "AWS::IAM::Role"]
            if not roles:
                problems.append(f"{lid}: Role {props['Role']!r} is not an AWS::IAM::Role of this template")
                continue
            statements = role_statements(roles[0])
        elif res.get("Type") == "AWS::Lambda::Function":
            problems.append(f"{lid}: no Role")
            continue
        else:
            statements = inline_statements(props.get("Policies"))
        gaps = deny_gaps(statements)
        if gaps:
            problems.append(f"{lid}: no explicit Deny of {', '.join(gaps)}")
    return problems


# ---------------------------------------------------------------- (b)-(e) resources
def is_true(value: Any) -> bool:
    return value is True or value == "true"


def table_violations(template: Template) -> list[str]:
    problems = []
    for lid, res in resources(template, "AWS::Serverless::SimpleTable", "AWS::DynamoDB::GlobalTable").items():
        problems.append(f"{lid}: {res['Type']} is not allowed; use AWS::DynamoDB::Table (deletion protection, PITR)")
    tables = resources(template, "AWS::DynamoDB::Table")
    for name in APPEND_ONLY_TABLES:
        if name not in tables:
            problems.append(f"{name}: append-only table missing (or not an AWS::DynamoDB::Table)")
    for lid, res in tables.items():
        props = res.get("Properties") or {}
        if res.get("DeletionPolicy") != "Retain":
            problems.append(f"{lid}: DeletionPolicy is {res.get('DeletionPolicy')!r}, not Retain")
        if res.get("UpdateReplacePolicy") != "Retain":
            problems.append(f"{lid}: UpdateReplacePolicy is {res.get('UpdateReplacePolicy')!r}, not Retain")
        if not is_true(props.get("DeletionProtectionEnabled")):
            problems.append(f"{lid}: DeletionProtectionEnabled is not true")
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        if not is_true(pitr):
            problems.append(f"{lid}: point-in-time recovery is not enabled")
    return problems


def ledger_stream_violations(template: Template) -> list[str]:
    ledger = resources(template, "AWS::DynamoDB::Table").get("LedgerTable")
    if ledger is None:
        return ["LedgerTable missing"]
    view = ((ledger.get("Properties") or {}).get("StreamSpecification") or {}).get("StreamViewType")
    if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        return [f"LedgerTable: stream view type {view!r}; the sealer needs NEW_IMAGE or NEW_AND_OLD_IMAGES"]
    return []


def evidence_bucket_violations(template: Template) -> list[str]:
    bucket = resources(template, "AWS::S3::Bucket").get("EvidenceBucket")
    if bucket is None:
        return ["EvidenceBucket missing (or not an AWS::S3::Bucket)"]
    props = bucket.get("Properties") or {}
    problems = []
    if not is_true(props.get("ObjectLockEnabled")):
        problems.append("EvidenceBucket: ObjectLockEnabled is not true")
    lock = props.get("ObjectLockConfiguration") or {}
    if lock.get("ObjectLockEnabled") != "Enabled":
        problems.append("EvidenceBucket: ObjectLockConfiguration.ObjectLockEnabled is not Enabled")
    retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    if retention.get("Mode") != "COMPLIANCE":
        problems.append(f"EvidenceBucket: default retention mode {retention.get('Mode')!r}, not COMPLIANCE")
    period = retention.get("Days", retention.get("Years"))
    if period is None:
        problems.append("EvidenceBucket: default retention has no Days or Years")
    elif isinstance(period, dict):
        for parameter in referenced_ids(period):
            spec = template.get("Parameters", {}).get(parameter, {})
            if int(spec.get("MinValue", 0)) < 1:
                problems.append(f"EvidenceBucket: retention parameter {parameter} allows values below 1")
    elif int(period) < 1:
        problems.append(f"EvidenceBucket: retention period {period!r} is below 1")
    if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
        problems.append("EvidenceBucket: versioning is not Enabled")
    if bucket.get("DeletionPolicy") != "Retain":
        problems.append("EvidenceBucket: DeletionPolicy is not Retain")
    return problems


def signing_key_violations(template: Template) -> list[str]:
    key = resources(template, "AWS::KMS::Key").get("SigningKey")
    if key is None:
        return ["SigningKey missing (or not an AWS::KMS::Key)"]
    props = key.get("Properties") or {}
    problems = []
    if props.get("KeySpec") != "ECC_NIST_P256":
        problems.append(f"SigningKey: KeySpec {props.get('KeySpec')!r}, not ECC_NIST_P256")
    if props.get("KeyUsage") != "SIGN_VERIFY":
        problems.append(f"SigningKey: KeyUsage {props.get('KeyUsage')!r}, not SIGN_VERIFY")
    if key.get("DeletionPolicy") != "Retain":
        problems.append("SigningKey: DeletionPolicy is not Retain (old bundles name this key)")
    return problems


# ---------------------------------------------------------------- (f) EnvironmentName only in names
def walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def references_parameter(node: Any, parameter: str) -> bool:
    """node itself is a Ref to parameter, or a Fn::Sub whose string uses ${parameter} (not via its own variable map)."""
    if not is_intrinsic(node):
        return False
    ((name, arg),) = node.items()
    if name == "Ref":
        return arg == parameter
    if name == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        return parameter in sub_variables(text) and parameter not in variables
    return False


def property_of(path: tuple[Any, ...]) -> str | None:
    """The template property a value belongs to: the last plain key before the first intrinsic function."""
    prop = None
    for key in path:
        if isinstance(key, str) and (key in ("Ref", "Condition") or key.startswith("Fn::")):
            break
        if isinstance(key, str):
            prop = key
    return prop


def environment_name_violations(template: Template, parameter: str = "EnvironmentName") -> list[str]:
    problems = []
    if parameter not in template.get("Parameters", {}):
        return [f"parameter {parameter} is not declared"]
    for section in ("Conditions", "Rules", "Mappings", "Globals", "Resources", "Outputs"):
        for path, node in walk(template.get(section), (section,)):
            if not references_parameter(node, parameter):
                continue
            location = "/".join(str(p) for p in path)
            prop = property_of(path)
            if section in ("Conditions", "Rules"):
                problems.append(f"{location}: {parameter} used in {section}: behaviour would depend on the environment")
            elif "Environment" in path:
                problems.append(
                    f"{location}: {parameter} in environment variables: code could read the environment name"
                )
            elif prop not in NAME_PROPERTIES:
                problems.append(f"{location}: {parameter} in property {prop!r}, which is not a name or description")
    return problems


# ---------------------------------------------------------------- (g) routes and authorizers
def route_violations(template: Template) -> list[str]:
    problems = []
    api = resources(template, "AWS::Serverless::Api").get(API_ID)
    if api is None:
        return [f"{API_ID} missing"]
    api_props = api.get("Properties") or {}
    for forbidden in ("DefinitionBody", "DefinitionUri"):
        if forbidden in api_props:
            problems.append(f"{API_ID}: {forbidden} would add routes these checks cannot see")
    auth = api_props.get("Auth") or {}
    if auth.get("DefaultAuthorizer") != "TenantAuthorizer":
        problems.append(f"{API_ID}: DefaultAuthorizer is {auth.get('DefaultAuthorizer')!r}, not TenantAuthorizer")
    authorizers = auth.get("Authorizers") or {}
    for name, function in AUTHORIZER_FUNCTIONS.items():
        spec = authorizers.get(name) or {}
        if spec.get("FunctionPayloadType") != "REQUEST":
            problems.append(f"{API_ID}: authorizer {name} is not a REQUEST authorizer")
        if not names_function_arn(spec.get("FunctionArn"), function):
            problems.append(f"{API_ID}: authorizer {name} does not invoke {function}")
    for other in resources(template, "AWS::Serverless::Api", "AWS::Serverless::HttpApi", "AWS::ApiGateway::RestApi"):
        if other != API_ID:
            problems.append(f"{other}: a second API is not covered by these checks")

    for lid, res in resources(template, "AWS::Serverless::Function").items():
        for event_id, event in ((res.get("Properties") or {}).get("Events") or {}).items():
            where = f"{lid}/{event_id}"
            if event.get("Type") == "HttpApi":
                problems.append(f"{where}: HttpApi events bypass the REST API's authorizers")
            if event.get("Type") != "Api":
                continue
            props = event.get("Properties") or {}
            path = props.get("Path")
            if props.get("RestApiId") != {"Ref": API_ID}:
                problems.append(f"{where}: RestApiId is not {API_ID} (an implicit API has no authorizer)")
            if not isinstance(path, str):
                problems.append(f"{where}: Path {path!r} is not a literal")
                continue
            if not (
                path.startswith(ROUTE_PREFIXES)
                or path == "/health"
                or path.startswith("/health/")
                or path in PUBLIC_PATHS
            ):
                problems.append(f"{where}: path {path} is outside /v1/, /admin/v1/, /webhooks/ and /health")
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            if path.startswith(WEBHOOK_PREFIX) != (lid in WEBHOOK_FUNCTIONS):
                problems.append(
                    f"{where}: {path}: webhook paths belong to {sorted(WEBHOOK_FUNCTIONS)} only, and only them"
                )
            if authorizer == "NONE":
                if path.startswith(WEBHOOK_PREFIX) and lid in WEBHOOK_FUNCTIONS:
                    continue
                if path not in PUBLIC_PATHS:
                    problems.append(
                        f"{where}: {path} is public (Authorizer NONE) but not one of {sorted(PUBLIC_PATHS)}"
                    )
            elif path.startswith("/admin/"):
                if authorizer != "AdminAuthorizer":
                    problems.append(f"{where}: admin path {path} uses {authorizer or 'the default'} authorizer")
            elif authorizer not in (None, "TenantAuthorizer"):
                problems.append(f"{where}: {path} uses authorizer {authorizer!r}, not the default TenantAuthorizer")
    return problems


def names_function_arn(value: Any, function: str) -> bool:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        return (arg if isinstance(arg, list) else str(arg).split(".", 1)) == [function, "Arn"]
    return False


CHECKS: dict[str, Callable[[Template], list[str]]] = {
    "append_only_allow": append_only_allow_violations,
    "function_deny": function_deny_violations,
    "tables": table_violations,
    "ledger_stream": ledger_stream_violations,
    "evidence_bucket": evidence_bucket_violations,
    "signing_key": signing_key_violations,
    "environment_name": environment_name_violations,
    "routes": route_violations,
}


# ---------------------------------------------------------------- the template holds
def test_loader_keeps_intrinsics_in_long_form(template):
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "MonCoreLayer"}]
    authorizer = template["Resources"][API_ID]["Properties"]["Auth"]["Authorizers"]["TenantAuthorizer"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["TenantAuthorizerFunction", "Arn"]}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_template_holds(template, check):
    problems = CHECKS[check](template)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the deployed roles hold (after the SAM transform)
# The SAM transform is what actually produces the roles: it expands policy templates (DynamoDBCrudPolicy, ...) into
# statements and adds managed policies. Translate with the SAM CLI's own aws-sam-translator (offline) and check the
# generated AWS::IAM::Role resources with the same statement checks.
_TRANSLATE = textwrap.dedent(
    """
    import json, sys
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self):
            return {}

    with open(sys.argv[1], encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    # What `sam package` does: local code and definition paths become S3 locations (placeholders: nothing is uploaded).
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://placeholder/{logical_id}"
    json.dump(transform(template, {"EnvironmentName": "sandbox"}, NoManagedPolicies()), sys.stdout)
    """
)


def translate(infra, template_path) -> Template:
    result = infra.run([infra.sam_python, "-c", _TRANSLATE, template_path], timeout=120)
    assert result.returncode == 0, infra.describe(result)
    return json.loads(result.stdout)


def effective_role_violations(transformed: Template) -> list[str]:
    problems = append_only_allow_violations(transformed)
    all_resources = resources(transformed)
    for lid, res in resources(transformed, "AWS::Lambda::Function").items():
        role_ids = referenced_ids((res.get("Properties") or {}).get("Role")) & set(all_resources)
        if len(role_ids) != 1:
            problems.append(f"{lid}: role {sorted(role_ids)} not found in the transformed template")
            continue
        gaps = deny_gaps(role_statements(all_resources[role_ids.pop()]))
        if gaps:
            problems.append(f"{lid}: generated role has no explicit Deny of {', '.join(gaps)}")
    return problems


def test_transformed_roles_hold(infra):
    transformed = translate(infra, infra.template)
    assert resources(transformed, "AWS::Lambda::Function"), "the transform produced no functions"
    problems = effective_role_violations(transformed)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- every check can fail
def _props(t: Template, name: str = "PartnerApiFunction") -> dict[str, Any]:
    return t["Resources"][name]["Properties"]


def _sid(t: Template, name: str, sid: str) -> dict[str, Any]:
    return next(s for s in _statements(t, name) if s.get("Sid") == sid)


def _statements(t: Template, name: str = "PartnerApiFunction") -> list[dict[str, Any]]:
    return next(p["Statement"] for p in _props(t, name)["Policies"] if isinstance(p, dict) and "Statement" in p)


def _add_policy(t: Template, policy: Any, name: str = "PartnerApiFunction") -> None:
    _props(t, name)["Policies"].append(policy)


def _deny(t: Template, name: str) -> dict[str, Any]:
    return next(s for s in _statements(t, name) if s.get("Effect") == "Deny")


def _event(t: Template, function: str, event: str) -> dict[str, Any]:
    return _props(t, function)["Events"][event]["Properties"]


MUTATIONS: dict[str, tuple[str, Callable[[Template], None]]] = {
    # (a) allows
    "crud_policy_template_on_ledger": (
        "append_only_allow",
        lambda t: _add_policy(t, {"DynamoDBCrudPolicy": {"TableName": {"Ref": "LedgerTable"}}}),
    ),
    "write_policy_template_on_audit": (
        "append_only_allow",
        lambda t: _add_policy(t, {"DynamoDBWritePolicy": {"TableName": {"Ref": "AuditTable"}}}, "AdminApiFunction"),
    ),
    "crud_policy_template_on_literal_table_name": (
        "append_only_allow",
        lambda t: _add_policy(t, {"DynamoDBCrudPolicy": {"TableName": "moncore-sandbox-ledger"}}),
    ),
    "update_item_added_to_append_statement": (
        "append_only_allow",
        lambda t: _sid(t, "PartnerApiFunction", "AppendOnlyTablesAppend")["Action"].append("dynamodb:UpdateItem"),
    ),
    "dynamodb_star_on_guards": (
        "append_only_allow",
        lambda t: _add_policy(
            t,
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": ["GuardsTable", "Arn"]}}
                ]
            },
        ),
    ),
    "delete_wildcard_on_all_tables": (
        "append_only_allow",
        lambda t: _add_policy(
            t,
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:Delete*"],
                        "Resource": {
                            "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"
                        },
                    }
                ]
            },
            "TenantAuthorizerFunction",
        ),
    ),
    "not_action_allow": (
        "append_only_allow",
        lambda t: _add_policy(t, {"Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]}),
    ),
    "dynamodb_full_access_managed_policy": ("append_only_allow", lambda t: _add_policy(t, "AmazonDynamoDBFullAccess")),
    "dynamodb_stream_policy_name_spoofed": (
        "append_only_allow",
        lambda t: _add_policy(t, "arn:aws:iam::aws:policy/AWSLambdaDynamoDBExecutionRoleFullAccess"),
    ),
    "separate_iam_policy_resource": (
        "append_only_allow",
        lambda t: t["Resources"].update(
            Extra={
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": "x",
                    "Roles": [{"Ref": "PartnerApiFunctionRole"}],
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "dynamodb:BatchWriteItem",
                                "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]},
                            }
                        ]
                    },
                },
            }
        ),
    ),
    # (a) denies
    "deny_removed_from_authorizer": (
        "function_deny",
        lambda t: _statements(t, "TenantAuthorizerFunction").remove(_deny(t, "TenantAuthorizerFunction")),
    ),
    "deny_missing_batch_write": (
        "function_deny",
        lambda t: _deny(t, "AdminApiFunction")["Action"].remove("dynamodb:BatchWriteItem"),
    ),
    "deny_missing_guards_table": (
        "function_deny",
        lambda t: _deny(t, "PartnerApiFunction")["Resource"].remove({"Fn::GetAtt": ["GuardsTable", "Arn"]}),
    ),
    "jobs_deny_missing_exceptions_table": (
        "function_deny",
        lambda t: _deny(t, "JobsFunction")["Resource"].remove({"Fn::GetAtt": ["ExceptionsTable", "Arn"]}),
    ),
    "jobs_may_delete_exception_records": (
        "append_only_allow",
        lambda t: _sid(t, "JobsFunction", "AppendOnlyTablesAppend")["Action"].append("dynamodb:DeleteItem"),
    ),
    "deny_made_conditional": (
        "function_deny",
        lambda t: _deny(t, "AdminAuthorizerFunction").update(Condition={"Bool": {"aws:ViaAWSService": "true"}}),
    ),
    "function_with_external_role": (
        "function_deny",
        lambda t: _props(t).update(Role="arn:aws:iam::123456789012:role/anything"),
    ),
    # (b)
    "table_without_deletion_protection": (
        "tables",
        lambda t: _props(t, "BalancesTable").update(DeletionProtectionEnabled=False),
    ),
    "table_without_pitr": ("tables", lambda t: _props(t, "LedgerTable").pop("PointInTimeRecoverySpecification")),
    "table_deletion_policy_delete": ("tables", lambda t: t["Resources"]["AuditTable"].update(DeletionPolicy="Delete")),
    "simple_table_added": ("tables", lambda t: t["Resources"].update(Scratch={"Type": "AWS::Serverless::SimpleTable"})),
    # (c)
    "ledger_without_stream": ("ledger_stream", lambda t: _props(t, "LedgerTable").pop("StreamSpecification")),
    "ledger_stream_keys_only": (
        "ledger_stream",
        lambda t: _props(t, "LedgerTable").update(StreamSpecification={"StreamViewType": "KEYS_ONLY"}),
    ),
    # (d)
    "evidence_governance_mode": (
        "evidence_bucket",
        lambda t: _props(t, "EvidenceBucket")["ObjectLockConfiguration"]["Rule"]["DefaultRetention"].update(
            Mode="GOVERNANCE"
        ),
    ),
    "evidence_without_object_lock": ("evidence_bucket", lambda t: _props(t, "EvidenceBucket").pop("ObjectLockEnabled")),
    "evidence_without_versioning": (
        "evidence_bucket",
        lambda t: _props(t, "EvidenceBucket").pop("VersioningConfiguration"),
    ),
    "evidence_retention_may_be_zero": (
        "evidence_bucket",
        lambda t: t["Parameters"]["EvidenceRetentionDays"].update(MinValue=0),
    ),
    # (e)
    "signing_key_rsa": ("signing_key", lambda t: _props(t, "SigningKey").update(KeySpec="RSA_2048")),
    "signing_key_encrypt": ("signing_key", lambda t: _props(t, "SigningKey").update(KeyUsage="ENCRYPT_DECRYPT")),
    # (f)
    "environment_name_in_env_var": (
        "environment_name",
        lambda t: _props(t)["Environment"]["Variables"].update(MONCORE_ENV={"Ref": "EnvironmentName"}),
    ),
    "environment_name_in_global_env_var": (
        "environment_name",
        lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(
            MONCORE_STAGE={"Fn::Sub": "stage-${EnvironmentName}"}
        ),
    ),
    "environment_name_in_condition": (
        "environment_name",
        lambda t: t.update(Conditions={"IsProd": {"Fn::Equals": [{"Ref": "EnvironmentName"}, "production"]}}),
    ),
    "environment_name_in_memory_size": (
        "environment_name",
        lambda t: _props(t).update(MemorySize={"Fn::FindInMap": ["Sizes", {"Ref": "EnvironmentName"}, "Memory"]}),
    ),
    # (g)
    "route_outside_prefixes": ("routes", lambda t: _event(t, "PartnerApiFunction", "CreateUser").update(Path="/users")),
    "admin_route_with_tenant_authorizer": (
        "routes",
        lambda t: _event(t, "AdminApiFunction", "CreateTenant").pop("Auth"),
    ),
    "tenant_route_made_public": (
        "routes",
        lambda t: _event(t, "PartnerApiFunction", "CreateTransfer").update(Auth={"Authorizer": "NONE"}),
    ),
    "tenant_route_with_admin_authorizer": (
        "routes",
        lambda t: _event(t, "PartnerApiFunction", "GetUser").update(Auth={"Authorizer": "AdminAuthorizer"}),
    ),
    "webhook_route_on_the_partner_function": (
        "routes",
        lambda t: _event(t, "PartnerApiFunction", "CreateUser").update(Path="/webhooks/{provider}"),
    ),
    "partner_route_on_the_webhooks_function": (
        "routes",
        lambda t: _event(t, "WebhooksFunction", "KycWebhook").update(Path="/v1/users/{user_id}"),
    ),
    "route_on_implicit_api": ("routes", lambda t: _event(t, "PartnerApiFunction", "GetAccount").pop("RestApiId")),
    "default_authorizer_removed": (
        "routes",
        lambda t: t["Resources"][API_ID]["Properties"]["Auth"].pop("DefaultAuthorizer"),
    ),
    "authorizer_swapped": (
        "routes",
        lambda t: t["Resources"][API_ID]["Properties"]["Auth"]["Authorizers"]["AdminAuthorizer"].update(
            FunctionArn={"Fn::GetAtt": ["TenantAuthorizerFunction", "Arn"]}
        ),
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_check_catches(template, mutation):
    check, mutate = MUTATIONS[mutation]
    mutated = copy.deepcopy(template)
    mutate(mutated)
    assert mutated != template, "the mutation changed nothing"
    assert CHECKS[check](mutated), f"{check} did not notice {mutation}"


def test_checks_catch_crud_policy_added_to_the_yaml(infra, load_template, tmp_path):
    """End to end on a temporary copy of template.yaml: DynamoDBCrudPolicy on LedgerTable fails the raw check and the
    check of the roles the SAM transform generates from it."""
    text = infra.template.read_text(encoding="utf-8")
    anchor = "      Policies:\n        - Statement:\n            - Sid: MutableTables\n"
    assert text.count(anchor) == 1, "PartnerApiFunction's policy block moved; update this test"
    broken = tmp_path / "template.yaml"
    broken.write_text(
        text.replace(
            anchor,
            "      Policies:\n        - DynamoDBCrudPolicy: {TableName: !Ref LedgerTable}\n"
            "        - Statement:\n            - Sid: MutableTables\n",
        ),
        encoding="utf-8",
    )
    raw = append_only_allow_violations(load_template(broken))
    assert any("DynamoDBCrudPolicy" in problem for problem in raw), raw
    effective = effective_role_violations(translate(infra, broken))
    assert any("PartnerApiFunction" in problem for problem in effective), effective
