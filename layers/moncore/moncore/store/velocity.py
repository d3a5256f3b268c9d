"""Velocity items (Counters table): read with the movement's users in one BatchGetItem, updated by the posting.

Reads are raw because the bucket attributes are dynamic (moncore.domain.velocity); the users come back as UserItem.
The update ADDs the charge's buckets and lifetime totals, REMOVEs the out-of-window buckets the reader saw, and
refreshes the TTL; it carries no condition: velocity feeds risk scores, not hard limits (those are the tier
counters, conditioned in store/ledger.py), and an unconditioned ADD never conflicts on its own condition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from pynamodb.expressions.operand import Path
from pynamodb.expressions.update import Action

from moncore.config import settings
from moncore.domain.velocity import VELOCITY_TTL, VelocityCharge, parse
from moncore.store.models import UserItem, VelocityItem, tenant_key
from moncore.store.transact import connection

_BATCH_ATTEMPTS = 8


def velocity_key(tenant_id: str, user_id: str, currency: str) -> str:
    return tenant_key(tenant_id, "vel", user_id, currency)


def read_users_and_velocity(
    tenant_id: str, user_ids: Iterable[str], velocity_of: Iterable[tuple[str, str]]
) -> tuple[dict[str, UserItem], dict[tuple[str, str], dict[str, int]]]:
    """The users (by id) and the bucket attributes of the (user id, currency) velocity items, in one consistent
    BatchGetItem over both tables (the posting path's only read besides the idempotency record)."""
    users_table, counters_table = settings().users_table, settings().counters_table
    user_keys = [tenant_key(tenant_id, user_id) for user_id in dict.fromkeys(user_ids)]
    velocity_keys = {velocity_key(tenant_id, user_id, ccy): (user_id, ccy) for user_id, ccy in velocity_of}
    request: dict[str, Any] = {}
    if user_keys:
        request[users_table] = {"Keys": [{"pk": {"S": key}} for key in user_keys], "ConsistentRead": True}
    if velocity_keys:
        request[counters_table] = {"Keys": [{"pk": {"S": key}} for key in velocity_keys], "ConsistentRead": True}
    users: dict[str, UserItem] = {}
    velocity: dict[tuple[str, str], dict[str, int]] = {pair: {} for pair in velocity_keys.values()}
    client: Any = connection().client  # botocore's DynamoDB client (its stubs do not know the operations)
    for _ in range(_BATCH_ATTEMPTS):
        if not request:
            return users, velocity
        answer = client.batch_get_item(RequestItems=request)
        for raw in answer.get("Responses", {}).get(users_table, []):
            user = UserItem.from_raw_data(raw)
            users[user.id] = user
        for raw in answer.get("Responses", {}).get(counters_table, []):
            velocity[velocity_keys[raw["pk"]["S"]]] = {
                name: int(value["N"]) for name, value in raw.items() if "N" in value and name != "expires_at"
            }
        request = answer.get("UnprocessedKeys") or {}
    raise RuntimeError("BatchGetItem left keys unprocessed after retries")  # throttled: the caller answers 5xx


def velocity_update(tenant_id: str, charge: VelocityCharge) -> tuple[VelocityItem, list[Action]]:
    """The item and the update actions of one velocity charge (no condition: see the module docstring)."""
    item = VelocityItem(velocity_key(tenant_id, charge.user_id, charge.currency))
    expires_at = int((parse(charge.recorded_at) + VELOCITY_TTL + timedelta(days=1)).timestamp())
    actions: list[Action] = [Path(name).add({"N": str(value)}) for name, value in charge.additions().items()]
    actions += [Path(name).remove() for name in charge.stale]
    actions += [
        VelocityItem.tenant_id.set(tenant_id),
        VelocityItem.user_id.set(charge.user_id),
        VelocityItem.currency.set(charge.currency),
        VelocityItem.updated_at.set(charge.recorded_at),
        VelocityItem.expires_at.set(expires_at),
    ]
    return item, actions
