"""The local backend: template.yaml's tables, bucket, key and secret exist in DynamoDB Local and moto, as declared."""

from __future__ import annotations

import os

import pytest

from infra.local_stack import LocalBackend
from infra.resources import create_resources
from infra.template import resolve, resources_of_type

pytestmark = pytest.mark.xdist_group("integration")


def test_every_table_exists_with_the_templates_schema(local_backend: LocalBackend) -> None:
    dynamodb = local_backend.endpoints.client("dynamodb")
    existing = set(dynamodb.list_tables()["TableNames"])
    for logical_id, resource in resources_of_type(local_backend.template, "AWS::DynamoDB::Table").items():
        declared = resolve(resource["Properties"], local_backend.ctx)
        assert declared["TableName"] in existing, logical_id
        table = dynamodb.describe_table(TableName=declared["TableName"])["Table"]
        assert table["KeySchema"] == declared["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(declared["AttributeDefinitions"], key=str)
        indexes = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {index["IndexName"] for index in declared.get("GlobalSecondaryIndexes", [])}
        if "StreamSpecification" in declared:
            assert table["StreamSpecification"]["StreamViewType"] == declared["StreamSpecification"]["StreamViewType"]
        if "TimeToLiveSpecification" in declared:
            ttl = dynamodb.describe_time_to_live(TableName=declared["TableName"])["TimeToLiveDescription"]
            assert ttl["AttributeName"] == declared["TimeToLiveSpecification"]["AttributeName"]


def test_evidence_bucket_is_locked_in_compliance_mode(local_backend: LocalBackend) -> None:
    s3 = local_backend.endpoints.client("s3")
    bucket = local_backend.ctx.refs["EvidenceBucket"]
    assert bucket == "moncore-sandbox-evidence-123456789012-eu-west-1"
    retention = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 2555)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_signing_key_and_pepper_secret(local_backend: LocalBackend) -> None:
    key = local_backend.endpoints.client("kms").describe_key(KeyId=local_backend.ctx.refs["SigningKey"])
    assert (key["KeyMetadata"]["KeySpec"], key["KeyMetadata"]["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    secrets = local_backend.endpoints.client("secretsmanager")
    value = secrets.get_secret_value(SecretId=local_backend.ctx.refs["ApiKeyPepperSecret"])["SecretString"]
    assert len(value) == 64
    assert value.isalnum()


def test_creating_again_reuses_everything(local_backend: LocalBackend) -> None:
    before = dict(local_backend.ctx.refs)
    create_resources(local_backend.template, local_backend.ctx, local_backend.endpoints)
    assert local_backend.ctx.refs == before


def test_function_environment_is_in_os_environ(local_backend: LocalBackend) -> None:
    assert os.environ["MONCORE_LEDGER_TABLE"] == "moncore-sandbox-ledger"
    assert os.environ["MONCORE_SIGNING_KEY_ID"] == local_backend.ctx.refs["SigningKey"]
    assert os.environ["AWS_ENDPOINT_URL_DYNAMODB"] == local_backend.dynamodb.endpoint_url
    assert os.environ["AWS_ENDPOINT_URL"] == local_backend.moto.endpoint_url
    assert os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled"
