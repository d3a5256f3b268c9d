"""MonCore local stack: DynamoDB Local + moto + an in-process API Gateway, all built from template.yaml."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

# The local stack always plays one region and one account; moto's default account keeps ARNs stable.
LOCAL_REGION = "eu-west-1"
LOCAL_ACCOUNT_ID = "123456789012"
