"""PynamoDB models: one per table of template.yaml (whose schema the local stack creates from the template itself).

Key helpers build every key from the tenant id first, so a query can never reach another tenant's items.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from moncore.config import settings

_S = settings()


class _Meta:
    region = _S.region
    max_pool_connections = 32
    connect_timeout_seconds = 5
    read_timeout_seconds = 10
    max_retry_attempts = 3


def tenant_key(tenant_id: str, *parts: str) -> str:
    if not tenant_id or "#" in tenant_id:
        raise ValueError("tenant id is required and may not contain '#'")
    return "#".join((tenant_id, *parts))


def plain_map(value: object) -> dict[str, str]:
    """A raw MapAttribute (or dict) as a plain dict of strings."""
    raw: Any = value.as_dict() if isinstance(value, MapAttribute) else value
    return {str(k): str(v) for k, v in dict(raw or {}).items()}


class TenantItem(Model):
    class Meta(_Meta):
        table_name = _S.tenants_table

    pk = UnicodeAttribute(hash_key=True)  # tenant id
    name = UnicodeAttribute()
    jurisdictions = ListAttribute(of=UnicodeAttribute)
    capabilities = MapAttribute[str, Any]()
    open_banking_provider = UnicodeAttribute()
    # Tenants created before FX existed read back with the sandbox adapter (a default, so no migration is needed).
    fx_provider = UnicodeAttribute(default="sandbox_fx")
    # Overrides of the default KYC tier limits (moncore.domain.limits.check_overrides); absent means the defaults.
    tier_limits = JSONAttribute(null=True)
    # The KYC adapter (moncore.providers.kyc); tenants created before KYC existed read back with the sandbox one.
    kyc_provider = UnicodeAttribute(default="sandbox_kyc")
    # The card adapters (moncore.providers.cards): who issues the tenant's cards and who processes their payments.
    card_issuer = UnicodeAttribute(default="sandbox_cards")
    card_processor = UnicodeAttribute(default="sandbox_cards")
    # The screening adapter (moncore.providers.screening); tenants created before the port read back with the kernel's
    # own engine over the shipped lists.
    screening_provider = UnicodeAttribute(default="moncore_lists")
    # Bumped by every configuration change (admin PATCH .../config), the condition that stops two admins' changes
    # from overwriting each other; absent on tenants never changed since creation.
    config_version = NumberAttribute(null=True)
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()


class CredentialItem(Model):
    """An API key: `pk` is the public key id; only a keyed hash (HMAC-SHA256 with a secret pepper) of the secret."""

    class Meta(_Meta):
        table_name = _S.credentials_table

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()  # tenant | admin
    tenant_id = UnicodeAttribute(null=True)
    role = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    secret_hash = UnicodeAttribute()
    status = UnicodeAttribute()  # active | revoked
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)
    revoked_by = UnicodeAttribute(null=True)


class UsersByTenantIndex(GlobalSecondaryIndex["UserItem"]):
    """Every user of a tenant, in id order (the re-screening job; user creation already writes tenant_id)."""

    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    id = UnicodeAttribute(range_key=True)


class UserItem(Model):
    class Meta(_Meta):
        table_name = _S.users_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#user_id
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    external_ref = UnicodeAttribute()
    full_name = UnicodeAttribute()
    country = UnicodeAttribute()
    date_of_birth = UnicodeAttribute(null=True)
    tier = UnicodeAttribute()
    status = UnicodeAttribute()  # ACTIVE | FROZEN
    created_at = UnicodeAttribute()
    # The last freeze or unfreeze (moncore.compliance.freezes): why, by whom, when. Absent until the first one.
    status_reason = UnicodeAttribute(null=True)
    status_changed_by = UnicodeAttribute(null=True)
    status_changed_at = UnicodeAttribute(null=True)
    # Sanctions screening (moncore.compliance.screening.gate): clear | pending_review | confirmed; absent (users created
    # before screening was wired) counts as clear. The lists version screened against (a changed one makes the
    # rescreen job screen the user again), when, and the open screening case while pending_review / confirmed.
    screening_status = UnicodeAttribute(null=True)
    screened_at = UnicodeAttribute(null=True)
    screening_lists_version = UnicodeAttribute(null=True)
    screening_case_id = UnicodeAttribute(null=True)
    # KYC (moncore.compliance.kyc): the kernel's adjudication behind `tier`. kyc_status absent = unverified; the
    # check that set it, when, and when its evidence expires (the tier_enforcement job then moves the user to tier_0).
    kyc_status = UnicodeAttribute(null=True)
    kyc_checked_at = UnicodeAttribute(null=True)
    kyc_expires_at = UnicodeAttribute(null=True)
    kyc_check_id = UnicodeAttribute(null=True)

    by_tenant = UsersByTenantIndex()


class AccountsByTenantIndex(GlobalSecondaryIndex["AccountItem"]):
    """Every account of a tenant, in id order (snapshot and rebuild jobs)."""

    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    id = UnicodeAttribute(range_key=True)


class AccountItem(Model):
    class Meta(_Meta):
        table_name = _S.accounts_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#account_id
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    currency = UnicodeAttribute()
    kind = UnicodeAttribute()  # user | system
    shards = NumberAttribute(default=1)  # sub-balance items (hot system accounts); fixed for the account's life
    purpose = UnicodeAttribute(null=True)  # for system accounts: funding_clearing, ...
    status = UnicodeAttribute()  # ACTIVE | FROZEN | CLOSED
    created_at = UnicodeAttribute()
    status_reason = UnicodeAttribute(null=True)  # the last freeze or unfreeze, as on UserItem
    status_changed_by = UnicodeAttribute(null=True)
    status_changed_at = UnicodeAttribute(null=True)
    # A merchant account (docs/providers.md, "QR payments"): {name, city, category_code} as written into its EMV QR
    # payment requests. Absent on every other account (and on accounts created before QR payments existed).
    merchant = JSONAttribute(null=True)

    by_tenant = AccountsByTenantIndex()


class BalanceItem(Model):
    """Derived from the ledger; updated in the posting's own transaction with ADD and a floor condition.

    One item per account shard: shard 0 is `tenant#account_id`, shard k > 0 is `tenant#account_id#k`; the account's
    balance is the sum over its shards. available = posted - pending_out always holds per item."""

    class Meta(_Meta):
        table_name = _S.balances_table

    pk = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    shard = NumberAttribute(default=0)
    posted_minor = NumberAttribute(default=0)
    pending_in_minor = NumberAttribute(default=0)
    pending_out_minor = NumberAttribute(default=0)
    available_minor = NumberAttribute(default=0)
    version = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(null=True)


class OpenHoldsIndex(GlobalSecondaryIndex["HoldItem"]):
    class Meta:
        index_name = "open_by_expiry"
        projection = AllProjection()

    open_tenant_id = UnicodeAttribute(hash_key=True)
    hold_expires_at = UnicodeAttribute(range_key=True)


class HoldItem(Model):
    """Derived: the state of one manual-capture transaction's hold, written with each of its events."""

    class Meta(_Meta):
        table_name = _S.holds_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#txn_id
    tenant_id = UnicodeAttribute()
    txn_id = UnicodeAttribute()
    status = UnicodeAttribute()
    amount_minor = NumberAttribute()
    captured_minor = NumberAttribute()
    released_minor = NumberAttribute()
    held_minor = NumberAttribute()
    currency = UnicodeAttribute()
    last_seq = NumberAttribute()
    hold_expires_at = UnicodeAttribute(null=True)  # None for a review hold (no expiry)
    open_tenant_id = UnicodeAttribute(null=True)  # set only while open: the sparse expiry index
    updated_at = UnicodeAttribute()

    open_by_expiry = OpenHoldsIndex()


class CounterItem(Model):
    """Derived, mutable: what a user sent out in one currency during one UTC calendar day or month, updated with ADD
    and a limit condition in the posting's own TransactWriteItems (invariant 7; moncore.domain.limits). Removed by
    DynamoDB TTL (`expires_at`) some time after its window ended."""

    class Meta(_Meta):
        table_name = _S.counters_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#user#<user_id>#<ccy>#day#2026-11-22 | ...#month#2026-11
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    window = UnicodeAttribute()  # day | month
    period = UnicodeAttribute()  # 2026-11-22 | 2026-11
    total_minor = NumberAttribute(default=0)
    limit_minor = NumberAttribute(null=True)  # the limit the last charge was checked against
    version = NumberAttribute(default=0)  # postings that charged it
    updated_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # epoch seconds, DynamoDB TTL


class VelocityItem(Model):
    """Derived, mutable (Counters table): a user's rolling-window velocity in one currency. Besides the attributes
    below it holds one numeric attribute per time bucket (moncore.domain.velocity), ADDed by the postings
    themselves; store/velocity.py reads them raw, since PynamoDB only knows declared attributes."""

    class Meta(_Meta):
        table_name = _S.counters_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#vel#<user_id>#<ccy>
    tenant_id = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # epoch seconds, DynamoDB TTL: refreshed by every posting


class AmlDecidedIndex(GlobalSecondaryIndex["AmlEventItem"]):
    """A tenant's AML events in decision order (compliance views, the AML sweep)."""

    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    decided_sk = UnicodeAttribute(range_key=True)


class AmlEventItem(Model):
    """Append-only: one AML decision (moncore.domain.aml) with everything needed to re-derive it: the rule set
    version, the canonical inputs and their SHA-256, the score and the reasons. Written in the posting's own
    transaction for allow and review, on its own for a block (nothing else is written then)."""

    class Meta(_Meta):
        table_name = _S.aml_events_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#subject_id (the transaction, or the user for a sweep finding)
    sk = UnicodeAttribute(range_key=True)  # AML#<inputs_sha256>: the same request with the same inputs decides once
    event_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    decided_sk = UnicodeAttribute()  # <decided_at>#<subject_id>
    subject_id = UnicodeAttribute()
    operation = UnicodeAttribute()  # transfer | funding | fx_conversion | sweep
    ruleset = UnicodeAttribute()
    decision = UnicodeAttribute()  # allow | review | block
    score = NumberAttribute()
    reasons = JSONAttribute()
    inputs = JSONAttribute()
    inputs_sha256 = UnicodeAttribute()
    user_ids = JSONAttribute()
    case_id = UnicodeAttribute(null=True)
    actor = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    decided_at = UnicodeAttribute()

    by_tenant = AmlDecidedIndex()


class KycCheckItem(Model):
    """A KYC verification (moncore.compliance.kyc), mutable: PENDING until the provider's result arrives by webhook,
    then COMPLETED once, conditionally, in the same transaction as the user's tier and the audit event."""

    class Meta(_Meta):
        table_name = _S.kyc_checks_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#check_id
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    level = UnicodeAttribute()  # tier_1 | tier_2
    status = UnicodeAttribute()  # PENDING | COMPLETED
    provider = UnicodeAttribute()
    provider_ref = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    # set once, on completion
    decision = UnicodeAttribute(null=True)  # approved | rejected | referred
    completed_at = UnicodeAttribute(null=True)
    event_id = UnicodeAttribute(null=True)  # the provider event that completed it
    advisory = JSONAttribute(null=True)  # the provider's result as normalised (domain.kyc.Advisory)
    advisory_sha256 = UnicodeAttribute(null=True)
    adjudication = JSONAttribute(null=True)  # the kernel's decision (domain.kyc.Adjudication.record)
    case_id = UnicodeAttribute(null=True)


class WebhooksByProviderIndex(GlobalSecondaryIndex["WebhookEventItem"]):
    """A provider's deliveries (accepted and rejected) in arrival order, for operators (GET
    /admin/v1/webhook-events?provider=..)."""

    class Meta:
        index_name = "by_provider"
        projection = AllProjection()

    provider = UnicodeAttribute(hash_key=True)
    received_at = UnicodeAttribute(range_key=True)


class WebhookEventItem(Model):
    """The webhook inbox (moncore.providers.webhooks), mutable: every delivery is stored, with the SHA-256 of its raw
    bytes, before anything acts on it. Not owned by a tenant when it arrives (the tenant is found by matching the
    event), so keys are prefixed by the platform partition instead: `_platform#webhook#<domain>#<provider>#<event id>`
    for verified events (one per provider event id: a redelivery finds it), `_platform#webhook-rejected#<domain>#
    <provider>#<attempt id>` for refused attempts (expiring, TTL `expires_at`)."""

    class Meta(_Meta):
        table_name = _S.webhook_events_table

    pk = UnicodeAttribute(hash_key=True)
    domain = UnicodeAttribute()  # kyc | (cards, open_banking, ... later)
    provider = UnicodeAttribute()
    event_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()  # RECEIVED | PROCESSED | IGNORED | UNMATCHED | REJECTED
    reason = UnicodeAttribute(null=True)  # why REJECTED / UNMATCHED / IGNORED
    raw_body = BinaryAttribute(legacy_encoding=False)
    body_sha256 = UnicodeAttribute()
    signature = UnicodeAttribute(null=True)  # the header as received (a MAC, not a secret)
    signed_at = NumberAttribute(null=True)  # the signature's timestamp, unix seconds
    secret_index = NumberAttribute(null=True)  # which active secret verified it (0 newest, 1 being retired)
    received_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    correlation_id = UnicodeAttribute(null=True)
    tenant_id = UnicodeAttribute(null=True)  # once matched
    subject_id = UnicodeAttribute(null=True)  # the check (or transaction) it was matched to
    outcome = JSONAttribute(null=True)  # what processing did
    expires_at = NumberAttribute(null=True)  # epoch seconds, rejected attempts only (DynamoDB TTL)
    replayed_at = UnicodeAttribute(null=True)  # the last operator replay (POST /admin/v1/webhook-events/{key}/replay)
    by_provider = WebhooksByProviderIndex()


class SettlementsByDateIndex(GlobalSecondaryIndex["SettlementItem"]):
    class Meta:
        index_name = "by_tenant_date"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    date_sk = UnicodeAttribute(range_key=True)  # <value_date>#<settlement_id>


class SettlementItem(Model):
    """Append-only: one signed settlement record per (tenant, provider, purpose, currency, value date)
    (moncore.domain.settlement); written once, never changed (a rerun finds it)."""

    class Meta(_Meta):
        table_name = _S.settlements_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#settlement_id
    settlement_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    date_sk = UnicodeAttribute()
    provider = UnicodeAttribute()
    provider_reference = UnicodeAttribute()
    purpose = UnicodeAttribute()
    currency = UnicodeAttribute()
    value_date = UnicodeAttribute()
    amount_minor = NumberAttribute()
    item_count = NumberAttribute()
    document = JSONAttribute()  # the signed payload (canonical JSON of this document is what was signed)
    payload_sha256 = UnicodeAttribute()
    signature_b64 = UnicodeAttribute()
    key_id = UnicodeAttribute()
    algorithm = UnicodeAttribute()
    mode = UnicodeAttribute()  # live (legs posted) | shadow (recorded only)
    posted_txn_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    correlation_id = UnicodeAttribute()

    by_tenant_date = SettlementsByDateIndex()


class ReconciliationItem(Model):
    """Append-only: the records of one reconciliation run, in the run's partition (pk = run id; docs/reconciliation.md
    "Runs", "Exceptions and adjustments"). sk `RUN#<nnnn>` are the run's state versions, `EXC#<exception id>#<nnnn>`
    an exception's versions, `ADJ#<adjustment id>#<nnnn>` an adjustment's. A change is the next version, written
    with attribute_not_exists (two writers can never both build on one version); the latest version is the state.
    The sandbox bank's plans and calls live under pk `_sandbox#statements#...` (moncore.providers.statements)."""

    class Meta(_Meta):
        table_name = _S.reconciliations_table

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # run | exception | adjustment | sandbox_plan | sandbox_call
    version = NumberAttribute()
    status = UnicodeAttribute(null=True)
    document = JSONAttribute()  # the whole record at this version
    recorded_at = UnicodeAttribute()
    actor = UnicodeAttribute()


class ParkedByTxnIndex(GlobalSecondaryIndex["ProviderEventItem"]):
    class Meta:
        index_name = "parked_by_txn"
        projection = AllProjection()

    parked_txn_key = UnicodeAttribute(hash_key=True)
    received_at = UnicodeAttribute(range_key=True)


class ProviderEventItem(Model):
    """A provider lifecycle event as received (deduplicated by provider event id) and what became of it."""

    class Meta(_Meta):
        table_name = _S.provider_events_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#provider#event_id
    tenant_id = UnicodeAttribute()
    provider = UnicodeAttribute()
    event_id = UnicodeAttribute()
    txn_id = UnicodeAttribute()
    payload = JSONAttribute()
    payload_hash = UnicodeAttribute()
    status = UnicodeAttribute()  # RECEIVED | PARKED | APPLIED | REJECTED
    outcome = UnicodeAttribute(null=True)  # the refusal's code when REJECTED
    parked_txn_key = UnicodeAttribute(null=True)  # tenant#txn_id while PARKED (sparse index)
    correlation_id = UnicodeAttribute(null=True)  # of the first delivery: a parked event applies under it later
    received_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    parked_by_txn = ParkedByTxnIndex()


class ProviderSequenceItem(Model):
    """ProviderEvents table: event `sequence` of one authorisation is closed (applied or rejected). Events that carry
    the processor's sequence wait for this marker of their predecessor (moncore.ledger.provider_events)."""

    class Meta(_Meta):
        table_name = _S.provider_events_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#seq#<txn_id>#<sequence>
    tenant_id = UnicodeAttribute()
    txn_id = UnicodeAttribute()
    sequence = NumberAttribute()
    event_id = UnicodeAttribute()
    status = UnicodeAttribute()  # APPLIED | REJECTED
    closed_at = UnicodeAttribute()


class CardsByTenantIndex(GlobalSecondaryIndex["CardItem"]):
    """Sparse: a tenant's cards (`<tenant>#card`) and card clearing records (`<tenant>#clearing`) in time order."""

    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_kind = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


class CardItem(Model):
    """Cards table: a card issued through the tenant's card issuer (moncore.ledger.cards). Mutable status (ACTIVE |
    FROZEN | CLOSED), every change written with its audit event. Never the PAN: the issuer's token and the last four
    digits only."""

    class Meta(_Meta):
        table_name = _S.cards_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#card_id
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()  # ACTIVE | FROZEN | CLOSED
    issuer = UnicodeAttribute()
    token = UnicodeAttribute()  # the issuer's card token (what processor events name)
    last4 = UnicodeAttribute()
    exp_month = NumberAttribute()
    exp_year = NumberAttribute()
    issuer_status = UnicodeAttribute()  # the status the issuer last confirmed (a retry re-sends a missed change)
    request_hash = UnicodeAttribute()
    created_by = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    status_reason = UnicodeAttribute(null=True)
    status_changed_by = UnicodeAttribute(null=True)
    status_changed_at = UnicodeAttribute(null=True)
    tenant_kind = UnicodeAttribute()  # <tenant>#card
    sort_key = UnicodeAttribute()  # <created_at>#<card_id>

    by_tenant = CardsByTenantIndex()


class CardTokenItem(Model):
    """Cards table: which tenant's card an issuer token is. Processor webhooks name the token only, and belong to no
    tenant until matched, so the key is under the platform partition (`_platform#card_token#<issuer>#<token>`)."""

    class Meta(_Meta):
        table_name = _S.cards_table

    pk = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    card_id = UnicodeAttribute()
    account_id = UnicodeAttribute()  # the card's account (fixed for the card's life), so events need no card read
    issuer = UnicodeAttribute()
    created_at = UnicodeAttribute()


class ClearingsByTenantIndex(GlobalSecondaryIndex["CardClearingItem"]):
    """The same sparse index as CardsByTenantIndex, read for clearing records (`<tenant>#clearing`)."""

    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_kind = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


class CardClearingItem(Model):
    """Cards table: one card clearing or refund as the processor presented it and what the kernel did with it,
    written once (moncore.ledger.card_events): `shadow` (card_clearing not live: the legs it would post, nothing
    posted) or `live` (posted: the transaction and the legs). Reconciliation matches these against the processor's
    settlement report by provider and event id."""

    class Meta(_Meta):
        table_name = _S.cards_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#clearing#<provider>#<event_id>
    tenant_id = UnicodeAttribute()
    provider = UnicodeAttribute()
    event_id = UnicodeAttribute()
    authorization_ref = UnicodeAttribute()
    txn_id = UnicodeAttribute()  # the card transaction (authorisation) it clears or refunds
    card_id = UnicodeAttribute(null=True)
    kind = UnicodeAttribute()  # clearing | refund
    amount_minor = NumberAttribute()
    currency = UnicodeAttribute()
    final = BooleanAttribute(default=False)
    mode = UnicodeAttribute()  # shadow | live (card_clearing's mode when it arrived)
    posted = BooleanAttribute()
    steps = JSONAttribute()  # [{kind, amount_minor, status}] the lifecycle steps (done, or that would be done)
    legs = JSONAttribute()  # [[account_id, signed amount_minor, phase]] (posted, or that would be posted)
    posted_txn_id = UnicodeAttribute(null=True)  # live: where the legs are (the refund's reversal transaction)
    recorded_at = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    tenant_kind = UnicodeAttribute()  # <tenant>#clearing
    sort_key = UnicodeAttribute()  # <recorded_at>#<event_id>

    by_tenant = ClearingsByTenantIndex()


class ShadowClearingStateItem(Model):
    """Cards table: what the shadow clearings of one card transaction would have done so far (captured, released,
    refunded), so the next one is computed as if they had been posted. Updated with each shadow record, conditional
    on `version`."""

    class Meta(_Meta):
        table_name = _S.cards_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#shadow#<txn_id>
    tenant_id = UnicodeAttribute()
    txn_id = UnicodeAttribute()
    captured_minor = NumberAttribute(default=0)
    released_minor = NumberAttribute(default=0)
    reversed_minor = NumberAttribute(default=0)
    version = NumberAttribute(default=0)
    updated_at = UnicodeAttribute()


class SandboxFaultItem(Model):
    """Cards table: the simulated card provider's failure plan (`_sandbox#fault#<provider>#<operation>#<subject>`):
    its next `remaining` calls of that operation fail as an outage would (docs/providers.md). Only the sandbox adapter
    reads it; a real provider keeps such state on its side."""

    class Meta(_Meta):
        table_name = _S.cards_table

    pk = UnicodeAttribute(hash_key=True)
    remaining = NumberAttribute(default=0)
    expires_at = NumberAttribute(null=True)  # epoch seconds, DynamoDB TTL


class SnapshotItem(Model):
    """Derived: an account's balance at the end of a UTC day on which it has entries (moncore.domain.snapshots),
    computed from ledger entries only; rewritten by the snapshot and rebuild jobs."""

    class Meta(_Meta):
        table_name = _S.snapshots_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#account_id
    sk = UnicodeAttribute(range_key=True)  # YYYY-MM-DD
    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    posted_minor = NumberAttribute()
    pending_in_minor = NumberAttribute()
    pending_out_minor = NumberAttribute()
    available_minor = NumberAttribute()
    entry_count = NumberAttribute()
    last_entry_sk = UnicodeAttribute()
    computed_at = UnicodeAttribute()


class ExceptionItem(Model):
    """Append-only: one mismatch between a derived item and what the ledger says it must be (sk = kind#key), or the
    summary of a rebuild run (sk "RUN")."""

    class Meta(_Meta):
        table_name = _S.exceptions_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#run_id
    sk = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    mode = UnicodeAttribute()  # verify | restore
    kind = UnicodeAttribute()  # balance | hold | snapshot | run
    key = UnicodeAttribute(null=True)
    expected = JSONAttribute(null=True)
    found = JSONAttribute(null=True)
    outcome = UnicodeAttribute()  # reported | restored | changed_during_run (per mismatch); completed (run)
    detected_at = UnicodeAttribute()
    summary = JSONAttribute(null=True)  # run: counts per kind


class ByAccountIndex(GlobalSecondaryIndex["LedgerItem"]):
    class Meta:
        index_name = "by_account"
        projection = AllProjection()

    account_pk = UnicodeAttribute(hash_key=True)
    entry_sk = UnicodeAttribute(range_key=True)


class LedgerItem(Model):
    """Append-only. sk "TXN" is the header (written once), "EVT#0001".. the lifecycle events in order, and
    "LEG#0001#01".. the legs each event posted (indexed by account)."""

    class Meta(_Meta):
        table_name = _S.ledger_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#txn_id
    sk = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    txn_id = UnicodeAttribute()
    recorded_at = UnicodeAttribute()
    effective_at = UnicodeAttribute()
    correlation_id = UnicodeAttribute(null=True)
    # header
    type = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    reference = UnicodeAttribute(null=True)
    provider = UnicodeAttribute(null=True)
    provider_ref = UnicodeAttribute(null=True)
    request_hash = UnicodeAttribute(null=True)
    fingerprint = MapAttribute[str, str](null=True)
    compliance = JSONAttribute(null=True)
    capture = UnicodeAttribute(null=True)  # auto | manual
    hold_expires_at = UnicodeAttribute(null=True)
    reverses_txn_id = UnicodeAttribute(null=True)
    fx = JSONAttribute(null=True)  # header: the conversion; leg: its attribution
    # event (and its legs: seq)
    seq = NumberAttribute(null=True)
    event = UnicodeAttribute(null=True)
    op_id = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    related_txn_id = UnicodeAttribute(null=True)
    # leg
    account_pk = UnicodeAttribute(null=True)
    entry_sk = UnicodeAttribute(null=True)
    account_id = UnicodeAttribute(null=True)
    account_kind = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    leg_amount_minor = NumberAttribute(null=True)
    phase = UnicodeAttribute(null=True)
    shard = NumberAttribute(null=True)
    entry_hash = UnicodeAttribute(null=True)

    by_account = ByAccountIndex()


class GuardItem(Model):
    """Append-only uniqueness item: one per provider reference, external user ref, ... (invariant 8)."""

    class Meta(_Meta):
        table_name = _S.guards_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#kind#value
    owner_id = UnicodeAttribute()
    created_at = UnicodeAttribute()


class IdempotencyItem(Model):
    """Mutable, expiring record of one (tenant, Idempotency-Key) execution."""

    class Meta(_Meta):
        table_name = _S.idempotency_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#key
    status = UnicodeAttribute()  # IN_PROGRESS | COMPLETED
    lock_token = UnicodeAttribute()
    locked_until = NumberAttribute()  # epoch seconds
    fingerprint = MapAttribute[str, str]()
    request_hash = UnicodeAttribute()
    response_status = NumberAttribute(null=True)
    response_body = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()  # epoch seconds, DynamoDB TTL
    replayable = BooleanAttribute(default=True)


class AuditItem(Model):
    """Append-only audit event: who did what, for which tenant, under which correlation id, with a payload hash."""

    class Meta(_Meta):
        table_name = _S.audit_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#yyyy-mm-dd
    sk = UnicodeAttribute(range_key=True)  # recorded_at#event_id
    event_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    action = UnicodeAttribute()
    actor = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    subject_id = UnicodeAttribute(null=True)
    payload = JSONAttribute()
    payload_hash = UnicodeAttribute()
    recorded_at = UnicodeAttribute()


class SealsByLastItemIndex(GlobalSecondaryIndex["SealItem"]):
    """A tenant's blocks by their last item's cursor: the block sealing an item is the first one whose last_item is at
    or after the item's cursor (or, for an item that committed late, one of the next few). Keys, first_item and
    created_at only: a proof fetches the one block it needs from the table."""

    class Meta:
        index_name = "by_last_item"
        projection = IncludeProjection(["first_item", "created_at"])

    pk = UnicodeAttribute(hash_key=True)
    last_item = UnicodeAttribute(range_key=True)


class SealItem(Model):
    """Append-only: one sealed block of a tenant (moncore.domain.seals, moncore/audit/sealing.py). Written once with
    attribute_not_exists on (tenant, seq), so two sealers can never both write block n: the chain cannot fork. Also
    copied, byte for byte as `document`, to the Object Lock bucket (seals/<tenant>/<seq>.json)."""

    class Meta(_Meta):
        table_name = _S.seals_table

    pk = UnicodeAttribute(hash_key=True)  # tenant id
    seq = NumberAttribute(range_key=True)  # 1, 2, ...
    block = JSONAttribute()  # the block as hashed and signed (domain.seals.build_block)
    block_hash = UnicodeAttribute()
    key_id = UnicodeAttribute()
    algorithm = UnicodeAttribute()
    signature_b64 = UnicodeAttribute()
    leaves = JSONAttribute()  # [{kind, pk, sk, cursor, item_hash}] in leaf order
    first_item = UnicodeAttribute()
    last_item = UnicodeAttribute()
    created_at = UnicodeAttribute()

    by_last_item = SealsByLastItemIndex()


class LeaseItem(Model):
    """A scheduled job's lease (one per tenant and job), so two runs never overlap. Kept in the Idempotency table:
    like an idempotency claim it is a short-lived mutable lock that expires by itself (TTL `expires_at`)."""

    class Meta(_Meta):
        table_name = _S.idempotency_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#lease#job
    owner_token = UnicodeAttribute()
    leased_until = NumberAttribute()  # epoch seconds
    acquired_at = UnicodeAttribute()
    expires_at = NumberAttribute()  # epoch seconds, DynamoDB TTL


class CasesByTenantIndex(GlobalSecondaryIndex["CaseItem"]):
    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class CaseItem(Model):
    """A compliance case: mutable (status, assignee, notes), every change written with its audit event."""

    class Meta(_Meta):
        table_name = _S.cases_table

    pk = UnicodeAttribute(hash_key=True)  # case id (admin routes address cases by id; tenant_id is an attribute)
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    outcome = UnicodeAttribute(null=True)
    reason = UnicodeAttribute()
    subject_user_id = UnicodeAttribute(null=True)
    txn_id = UnicodeAttribute(null=True)
    assignee = UnicodeAttribute(null=True)
    notes = JSONAttribute(default=list)
    opened_by = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    decision_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = NumberAttribute(default=0)
    # screening_hit cases opened by the kernel: the matches [{list, entry_id, ...}] a no_action decision remembers
    # as false positives for the subject user (moncore.compliance.screening.gate).
    screening_hits = JSONAttribute(null=True)

    by_tenant = CasesByTenantIndex()


class ApprovalItem(Model):
    """A change that needs a second admin (four-eyes), from request to decision. Mutable: status moves PENDING ->
    APPROVED | REJECTED once, by a conditional update in the same transaction as the change it approves.

    pk is the tenant id, sk `<kind>#<request_id>` (kind "capability" today), so one Query lists a tenant's requests
    of one kind in creation order (request ids are time-ordered)."""

    class Meta(_Meta):
        table_name = _S.approvals_table

    pk = UnicodeAttribute(hash_key=True)  # tenant id
    sk = UnicodeAttribute(range_key=True)  # kind#request_id
    request_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    capability = UnicodeAttribute()
    mode = UnicodeAttribute()
    contract_ref = UnicodeAttribute(null=True)
    previous_mode = UnicodeAttribute(null=True)  # the capability's mode when requested
    status = UnicodeAttribute()  # PENDING | APPROVED | REJECTED
    requested_by = UnicodeAttribute()
    requested_at = UnicodeAttribute()
    expires_at = UnicodeAttribute()  # RFC 3339; a PENDING request can no longer be approved after it
    correlation_id = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)
    decision_reason = UnicodeAttribute(null=True)


class WatchlistItem(Model):
    """Screening table (mutable): a tenant's custom watchlist. pk `tenant#watchlist`; sk `meta` holds the
    watchlist's version (bumped in the same transaction as every entry change, so screenings know what they saw),
    sk `entry#<entry_id>` one entry. Deactivated entries stay, marked inactive (who, when, why)."""

    class Meta(_Meta):
        table_name = _S.screening_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#watchlist
    sk = UnicodeAttribute(range_key=True)  # meta | entry#<entry_id>
    tenant_id = UnicodeAttribute()
    version = NumberAttribute(null=True)  # meta only
    entry_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    aliases = ListAttribute(of=UnicodeAttribute, null=True)
    country = UnicodeAttribute(null=True)
    date_of_birth = UnicodeAttribute(null=True)
    party = UnicodeAttribute(null=True)  # individual | entity
    reason = UnicodeAttribute(null=True)
    active = BooleanAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    deactivated_by = UnicodeAttribute(null=True)
    deactivated_at = UnicodeAttribute(null=True)
    deactivation_reason = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)


class FalsePositiveItem(Model):
    """Screening table (mutable): an officer's decision that a user is not a listed entry (a screening case closed
    with no_action). pk `tenant#false_positive`, sk `<user_id>#<list>#<entry_id>`: one Query reads a tenant's (the
    rescreen job) or, with begins_with, one user's."""

    class Meta(_Meta):
        table_name = _S.screening_table

    pk = UnicodeAttribute(hash_key=True)  # tenant#false_positive
    sk = UnicodeAttribute(range_key=True)  # user_id#list#entry_id
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    list_name = UnicodeAttribute()
    entry_id = UnicodeAttribute()
    matched_name = UnicodeAttribute(null=True)
    case_id = UnicodeAttribute()
    decided_by = UnicodeAttribute()
    decided_at = UnicodeAttribute()


class QrPaymentItem(Model):
    """Offers table: a merchant's QR payment request (moncore.ledger.qr), written once, never changed. pk
    `tenant#qr#<id>`. Whether it was paid is the guard `qr#<id>` (owner: the paying transaction), written by the
    payment's own TransactWriteItems; expiry is `expires_at` compared with the clock."""

    class Meta(_Meta):
        table_name = _S.offers_table

    pk = UnicodeAttribute(hash_key=True)
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    merchant_account_id = UnicodeAttribute()
    merchant_user_id = UnicodeAttribute()
    amount_minor = NumberAttribute()
    currency = UnicodeAttribute()
    reference = UnicodeAttribute(null=True)
    payload = UnicodeAttribute()  # the EMV merchant-presented payload issued (moncore.domain.qr)
    merchant = JSONAttribute()  # {name, city, category_code, country} as written into the payload
    expires_at = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    fingerprint = MapAttribute[str, str]()


class FxQuoteItem(Model):
    """Offers table: a firm FX quote a partner asked for (moncore.ledger.fx), written once, never changed. pk
    `tenant#fxq#<id>`. Whether it was used is the guard `fx_quote#<provider>#<provider quote id>`, written by the
    conversion that used it."""

    class Meta(_Meta):
        table_name = _S.offers_table

    pk = UnicodeAttribute(hash_key=True)
    id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    to_account_id = UnicodeAttribute()
    amount_minor = NumberAttribute()  # what leaves account_id, in `currency`
    currency = UnicodeAttribute()
    target_currency = UnicodeAttribute()
    target_amount_minor = NumberAttribute()
    rate = UnicodeAttribute()  # decimal string, never a float
    provider = UnicodeAttribute()
    provider_quote_id = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    fingerprint = MapAttribute[str, str]()


class ExportItem(Model):
    """Append-only: one version of an export or evidence bundle record (moncore/audit/exports.py). Every change
    (REQUESTED -> RUNNING with progress -> READY | FAILED) is the NEXT version, put with attribute_not_exists; the
    record's state is its latest version. `document` is the whole record at this version."""

    class Meta(_Meta):
        table_name = _S.exports_table

    pk = UnicodeAttribute(hash_key=True)  # export id
    version = NumberAttribute(range_key=True)  # 1, 2, ...
    tenant_id = UnicodeAttribute()
    origin = UnicodeAttribute()  # partner (POST /v1/exports) | admin (POST /admin/v1/evidence-bundles)
    status = UnicodeAttribute()  # REQUESTED | RUNNING | READY | FAILED
    document = JSONAttribute()
    recorded_at = UnicodeAttribute()
