"""The idempotency fingerprint names exactly the fields that differ between two requests with one key."""

import pytest

from moncore.domain.errors import ValidationFailed
from moncore.http.idempotency import request_identity


def test_same_request_same_hash_regardless_of_key_order() -> None:
    a = request_identity("k", "POST /v1/transfers", {"amount_minor": 5, "currency": "EUR"})
    b = request_identity("k", "POST /v1/transfers", {"currency": "EUR", "amount_minor": 5})
    assert a.request_hash == b.request_hash
    assert a.fingerprint == b.fingerprint


def test_fingerprint_isolates_differing_fields() -> None:
    a = request_identity("k", "POST /v1/transfers", {"amount_minor": 5, "currency": "EUR"})
    b = request_identity("k", "POST /v1/transfers", {"amount_minor": 6, "currency": "EUR"})
    assert a.request_hash != b.request_hash
    assert [k for k in a.fingerprint if a.fingerprint[k] != b.fingerprint[k]] == ["amount_minor"]


def test_route_is_part_of_the_request() -> None:
    a = request_identity("k", "POST /v1/transfers", {})
    b = request_identity("k", "POST /v1/fundings", {})
    assert a.request_hash != b.request_hash


@pytest.mark.parametrize("key", [None, "", "x" * 256, "bad\nkey"])
def test_key_is_required_and_bounded(key: str | None) -> None:
    with pytest.raises(ValidationFailed):
        request_identity(key, "POST /v1/transfers", {})
