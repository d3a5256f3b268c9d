"""Create template.yaml's stateful resources locally, from the template's own properties.

Tables go to DynamoDB Local; the evidence bucket, signing key and pepper secret go to moto. Nothing here invents
schema: properties are copied from the template and only the ones the local services reject (deletion protection,
point-in-time recovery, SSE, tags) are left out. Every step is idempotent, so a second run reuses what exists.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra import LOCAL_REGION
from infra.processes import FAKE_ACCESS_KEY
from infra.template import ResolveContext, TemplateError, resolve

# CreateTable parameters whose CloudFormation shape equals the API shape. Everything else is either applied
# separately (TTL, streams) or not supported by DynamoDB Local (deletion protection, PITR, SSE, contributor insights).
_TABLE_PASSTHROUGH = (
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "LocalSecondaryIndexes",
)
# The REST API's id in execute-api ARNs and the request context.
LOCAL_API_ID = "localapi"
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


@dataclass(frozen=True)
class Endpoints:
    dynamodb: str  # DynamoDB Local
    aws: str  # moto: S3, KMS, Secrets Manager, Step Functions, ...
    region: str = LOCAL_REGION

    def client(self, service: str) -> Any:
        endpoint = self.dynamodb if service in ("dynamodb", "dynamodbstreams") else self.aws
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint,
            region_name=self.region,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_ACCESS_KEY,
        )


def create_resources(template: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> ResolveContext:
    """Create tables, buckets, keys and secrets; record each one's Ref/GetAtt values in `ctx` (returned).

    Resources that are not created locally (functions, API, layer) get their would-be physical names too, so any
    `Ref`/`Fn::GetAtt` in the template resolves.
    """
    creators = {
        "AWS::DynamoDB::Table": _create_table,
        "AWS::S3::Bucket": _create_bucket,
        "AWS::KMS::Key": _create_key,
        "AWS::SecretsManager::Secret": _create_secret,
    }
    resources: Mapping[str, Any] = template.get("Resources") or {}
    for logical_id, resource in resources.items():
        creator = creators.get(resource.get("Type", ""))
        if creator is not None:
            properties = resolve(resource.get("Properties") or {}, ctx)
            creator(logical_id, properties, ctx, endpoints)
    return name_resources(template, ctx)


def name_resources(template: Mapping[str, Any], ctx: ResolveContext) -> ResolveContext:
    """Give every resource not created locally its would-be physical name/ARN (functions, API, layer, ...)."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        if logical_id not in ctx.refs:
            _name_only(logical_id, resource, ctx)
    return ctx


def physical_ids(ctx: ResolveContext) -> dict[str, str]:
    """logical id -> the value `Ref` gives (table name, bucket name, key id, secret ARN, function name, ...)."""
    return dict(ctx.refs)


# ---------------------------------------------------------------- DynamoDB


def table_request(properties: Mapping[str, Any]) -> dict[str, Any]:
    """CreateTable parameters from a resolved AWS::DynamoDB::Table Properties mapping."""
    request = {key: properties[key] for key in _TABLE_PASSTHROUGH if key in properties}
    request.setdefault("BillingMode", "PROVISIONED" if "ProvisionedThroughput" in properties else "PAY_PER_REQUEST")
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in _INDEX_KEYS if key in index} for index in properties["GlobalSecondaryIndexes"]
        ]
    stream = properties.get("StreamSpecification")
    if stream:
        # CloudFormation has only the view type; the API wants an explicit StreamEnabled.
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return request


def _create_table(logical_id: str, properties: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> None:
    client = endpoints.client("dynamodb")
    request = table_request({"TableName": f"moncore-local-{logical_id}", **properties})
    name = request["TableName"]
    try:
        description = client.create_table(**request)["TableDescription"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
        description = client.describe_table(TableName=name)["Table"]
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        _enable_ttl(client, name, ttl["AttributeName"])
    ctx.refs[logical_id] = name
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    ctx.attributes[logical_id] = attributes


def _enable_ttl(client: Any, table: str, attribute: str) -> None:
    current = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(TableName=table, TimeToLiveSpecification={"AttributeName": attribute, "Enabled": True})


# ---------------------------------------------------------------- S3


def _create_bucket(logical_id: str, properties: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> None:
    client = endpoints.client("s3")
    name = properties.get("BucketName") or f"moncore-local-{logical_id.lower()}"
    lock = properties.get("ObjectLockEnabled") is True or str(properties.get("ObjectLockEnabled")).lower() == "true"
    request: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": lock}
    if endpoints.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": endpoints.region}
    try:
        client.create_bucket(**request)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    _configure_bucket(client, name, properties)
    ctx.refs[logical_id] = name
    ctx.attributes[logical_id] = {
        "Arn": f"arn:{ctx.partition}:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{endpoints.region}.amazonaws.com",
    }


def _configure_bucket(client: Any, name: str, properties: Mapping[str, Any]) -> None:
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    lock = properties.get("ObjectLockConfiguration")
    if lock and _current_lock(client, name) != _object_lock(lock):
        # Only when it differs: moto refuses to (re)configure the lock of a bucket that already holds objects, which
        # a second run finds once seals or bundles were written.
        client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=_object_lock(lock))
    encryption = properties.get("BucketEncryption")
    if encryption:
        rules = [_encryption_rule(rule) for rule in encryption["ServerSideEncryptionConfiguration"]]
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict(public_access))


def _current_lock(client: Any, name: str) -> dict[str, Any] | None:
    """The bucket's lock configuration as _object_lock writes it (moto also answers the unit not set, as 0)."""
    try:
        current = dict(client.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"])
    except ClientError:
        return None  # not configured yet
    default = (current.get("Rule") or {}).get("DefaultRetention")
    if default:
        current["Rule"] = {"DefaultRetention": {k: v for k, v in default.items() if v != 0}}
    return current


def _object_lock(lock: Mapping[str, Any]) -> dict[str, Any]:
    configuration: dict[str, Any] = {"ObjectLockEnabled": lock.get("ObjectLockEnabled", "Enabled")}
    retention = (lock.get("Rule") or {}).get("DefaultRetention")
    if retention:
        default: dict[str, Any] = {"Mode": retention["Mode"]}
        for unit in ("Days", "Years"):
            if unit in retention:
                default[unit] = int(retention[unit])  # parameters resolve to strings
        configuration["Rule"] = {"DefaultRetention": default}
    return configuration


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    by_default = dict(rule["ServerSideEncryptionByDefault"])
    if "KMSMasterKeyID" in by_default:  # CloudFormation spells it ID, the API Id
        by_default["KMSMasterKeyId"] = by_default.pop("KMSMasterKeyID")
    return {"ApplyServerSideEncryptionByDefault": by_default}


# ---------------------------------------------------------------- KMS


def _create_key(logical_id: str, properties: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> None:
    client = endpoints.client("kms")
    # KMS keys have no name; an alias named after the logical id makes a second run find the same key.
    alias = f"alias/moncore-local/{logical_id}"
    try:
        metadata = client.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "NotFoundException":
            raise
        request = {
            "KeySpec": properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "KeyUsage": properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "Description": properties.get("Description", logical_id),
        }
        metadata = client.create_key(**request)["KeyMetadata"]
        client.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    ctx.refs[logical_id] = metadata["KeyId"]
    ctx.attributes[logical_id] = {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}


# ---------------------------------------------------------------- Secrets Manager


def generate_secret_string(spec: Mapping[str, Any]) -> str:
    """A random value following CloudFormation's GenerateSecretString options (length, exclusions, JSON template)."""
    alphabet = ""
    if not _flag(spec, "ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not _flag(spec, "ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not _flag(spec, "ExcludeNumbers"):
        alphabet += string.digits
    if not _flag(spec, "ExcludePunctuation"):
        alphabet += string.punctuation
    if _flag(spec, "IncludeSpace"):
        alphabet += " "
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(char for char in alphabet if char not in excluded)
    if not alphabet:
        raise TemplateError("GenerateSecretString excludes every character")
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def _flag(spec: Mapping[str, Any], name: str) -> bool:
    return str(spec.get(name, False)).lower() == "true"


def _create_secret(logical_id: str, properties: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> None:
    client = endpoints.client("secretsmanager")
    name = properties.get("Name") or f"moncore-local-{logical_id}"
    try:
        arn = client.describe_secret(SecretId=name)["ARN"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        if "SecretString" in properties:
            value = properties["SecretString"]
        else:
            value = generate_secret_string(properties.get("GenerateSecretString") or {})
        arn = client.create_secret(Name=name, SecretString=value)["ARN"]
    # CloudFormation's Ref of a secret is its ARN (GetSecretValue accepts it like the name).
    ctx.refs[logical_id] = arn
    ctx.attributes[logical_id] = {"Id": arn}


# ---------------------------------------------------------------- everything else: names only


def _name_only(logical_id: str, resource: Mapping[str, Any], ctx: ResolveContext) -> None:
    """Physical names for resources the local stack runs differently (functions in-process, the API as a server)."""
    prefix = f"arn:{ctx.partition}"
    kind = resource.get("Type", "")
    properties = resource.get("Properties") or {}
    if kind == "AWS::Serverless::Function":
        name = _resolved_name(properties.get("FunctionName"), logical_id, ctx)
        ctx.refs[logical_id] = name
        ctx.attributes[logical_id] = {"Arn": f"{prefix}:lambda:{ctx.region}:{ctx.account_id}:function:{name}"}
    elif kind == "AWS::Serverless::Api":
        ctx.refs[logical_id] = LOCAL_API_ID
        ctx.attributes[logical_id] = {"RootResourceId": "root"}
    elif kind == "AWS::Serverless::LayerVersion":
        name = _resolved_name(properties.get("LayerName"), logical_id, ctx)
        ctx.refs[logical_id] = f"{prefix}:lambda:{ctx.region}:{ctx.account_id}:layer:{name}:1"
    else:
        ctx.refs[logical_id] = f"moncore-local-{logical_id}"


def _resolved_name(value: Any, logical_id: str, ctx: ResolveContext) -> str:
    if value is None:
        return f"moncore-local-{logical_id}"
    try:
        return str(resolve(value, ctx))
    except TemplateError:
        return f"moncore-local-{logical_id}"
