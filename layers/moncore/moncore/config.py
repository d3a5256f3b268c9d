"""Settings from the function's environment (set by template.yaml, or by the local stack from the same template).

Only resource names, endpoints and tunables live here. There is deliberately no environment-name setting: sandbox and
production differ in parameters and secrets, never in code paths (DESIGN.md invariant 11).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Settings:
    tenants_table: str
    credentials_table: str
    users_table: str
    accounts_table: str
    balances_table: str
    holds_table: str
    snapshots_table: str
    exceptions_table: str
    aml_events_table: str
    settlements_table: str
    reconciliations_table: str  # append-only: reconciliation runs, their exceptions and adjustments (versions)
    provider_events_table: str
    kyc_checks_table: str
    webhook_events_table: str
    cards_table: str
    counters_table: str
    cases_table: str
    screening_table: str
    ledger_table: str
    guards_table: str
    idempotency_table: str
    audit_table: str
    seals_table: str  # sealed blocks (moncore/audit/sealing.py), append-only
    exports_table: str  # export and evidence bundle records (moncore/audit/exports.py), append-only versions
    approvals_table: str
    offers_table: str  # QR payment requests and FX quotes (written once; their use is a guard)
    api_key_pepper_secret: str
    webhook_secrets_secret: str  # JSON {provider: secret | [newest, being retired]}
    evidence_bucket: str
    signing_key_id: str
    reconciliation_state_machine_arn: str  # the admin API starts runs (AdminApiFunction only; "" elsewhere)
    exports_state_machine_arn: str  # the partner and admin APIs start exports (those functions only; "" elsewhere)
    evidence_retention_days: int  # COMPLIANCE retention set on each evidence bundle (stack EvidenceRetentionDays)
    sanctions_dir: str  # folder of the screening lists; "" = found beside the repo (compliance/screening/lists.py)
    idempotency_ttl_seconds: int
    hot_account_shards: int
    tenant_cache_seconds: float
    webhook_secret_cache_seconds: float
    default_open_banking_provider: str  # the adapter new tenants get (a counterparty: a stack parameter)
    provider_plugins: str  # comma-separated modules registering extra provider adapters (providers/plugins.py)
    region: str


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


@cache
def settings() -> Settings:
    return Settings(
        tenants_table=_env("MONCORE_TENANTS_TABLE", "moncore-tenants"),
        credentials_table=_env("MONCORE_CREDENTIALS_TABLE", "moncore-credentials"),
        users_table=_env("MONCORE_USERS_TABLE", "moncore-users"),
        accounts_table=_env("MONCORE_ACCOUNTS_TABLE", "moncore-accounts"),
        balances_table=_env("MONCORE_BALANCES_TABLE", "moncore-balances"),
        holds_table=_env("MONCORE_HOLDS_TABLE", "moncore-holds"),
        snapshots_table=_env("MONCORE_SNAPSHOTS_TABLE", "moncore-snapshots"),
        exceptions_table=_env("MONCORE_EXCEPTIONS_TABLE", "moncore-exceptions"),
        aml_events_table=_env("MONCORE_AML_EVENTS_TABLE", "moncore-aml-events"),
        settlements_table=_env("MONCORE_SETTLEMENTS_TABLE", "moncore-settlements"),
        reconciliations_table=_env("MONCORE_RECONCILIATIONS_TABLE", "moncore-reconciliations"),
        provider_events_table=_env("MONCORE_PROVIDER_EVENTS_TABLE", "moncore-provider-events"),
        kyc_checks_table=_env("MONCORE_KYC_CHECKS_TABLE", "moncore-kyc-checks"),
        webhook_events_table=_env("MONCORE_WEBHOOK_EVENTS_TABLE", "moncore-webhook-events"),
        cards_table=_env("MONCORE_CARDS_TABLE", "moncore-cards"),
        counters_table=_env("MONCORE_COUNTERS_TABLE", "moncore-counters"),
        cases_table=_env("MONCORE_CASES_TABLE", "moncore-cases"),
        screening_table=_env("MONCORE_SCREENING_TABLE", "moncore-screening"),
        ledger_table=_env("MONCORE_LEDGER_TABLE", "moncore-ledger"),
        guards_table=_env("MONCORE_GUARDS_TABLE", "moncore-guards"),
        idempotency_table=_env("MONCORE_IDEMPOTENCY_TABLE", "moncore-idempotency"),
        audit_table=_env("MONCORE_AUDIT_TABLE", "moncore-audit"),
        seals_table=_env("MONCORE_SEALS_TABLE", "moncore-seals"),
        exports_table=_env("MONCORE_EXPORTS_TABLE", "moncore-exports"),
        approvals_table=_env("MONCORE_APPROVALS_TABLE", "moncore-approvals"),
        offers_table=_env("MONCORE_OFFERS_TABLE", "moncore-offers"),
        api_key_pepper_secret=_env("MONCORE_API_KEY_PEPPER_SECRET", "moncore-api-key-pepper"),
        webhook_secrets_secret=_env("MONCORE_WEBHOOK_SECRETS", "moncore-webhook-signing-secrets"),
        evidence_bucket=_env("MONCORE_EVIDENCE_BUCKET", ""),
        signing_key_id=_env("MONCORE_SIGNING_KEY_ID", ""),
        reconciliation_state_machine_arn=_env("MONCORE_RECONCILIATION_STATE_MACHINE_ARN", ""),
        exports_state_machine_arn=_env("MONCORE_EXPORTS_STATE_MACHINE_ARN", ""),
        evidence_retention_days=int(_env("MONCORE_EVIDENCE_RETENTION_DAYS", "1")),
        sanctions_dir=_env("MONCORE_SANCTIONS_DIR", ""),
        idempotency_ttl_seconds=int(_env("MONCORE_IDEMPOTENCY_TTL_SECONDS", "86400")),
        hot_account_shards=int(_env("MONCORE_HOT_ACCOUNT_SHARDS", "1")),
        tenant_cache_seconds=float(_env("MONCORE_TENANT_CACHE_SECONDS", "15")),
        webhook_secret_cache_seconds=float(_env("MONCORE_WEBHOOK_SECRET_CACHE_SECONDS", "300")),
        default_open_banking_provider=_env("MONCORE_DEFAULT_OPEN_BANKING_PROVIDER", "sandbox_open_banking"),
        provider_plugins=_env("MONCORE_PROVIDER_PLUGINS", ""),
        region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "eu-west-1")),
    )
