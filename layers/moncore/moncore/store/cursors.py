"""List cursors: DynamoDB's LastEvaluatedKey as opaque URL-safe base64 JSON, valid only for the listing that issued it.

A cursor comes back from the caller, so it is hostile input: anything that is not exactly a key of the expected shape,
scoped to the same tenant/account, is a 422, never a 5xx or a read of someone else's items.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from typing import Any

from moncore.domain.errors import ValidationFailed


def encode(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str, *, names: Collection[str], scope_name: str, scope_value: str) -> dict[str, Any]:
    """The key inside `cursor`: exactly the attributes `names`, each a string, with `scope_name` equal to
    `scope_value` (the tenant or account the listing is for)."""
    try:
        key = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        if set(key) != set(names) or key[scope_name]["S"] != scope_value:
            raise ValueError("cursor belongs to another listing")
        if not all(isinstance(key[name]["S"], str) for name in names):
            raise ValueError("malformed cursor")
        return dict(key)
    except (ValueError, KeyError, TypeError):
        raise ValidationFailed(
            "cursor is not valid for this listing", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None
