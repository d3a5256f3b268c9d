"""Request bodies are strict: wrong types, floats, zero, negatives, unknown currencies, unknown fields: refused."""

import pytest
from pydantic import ValidationError

from moncore.http.schemas import CreateTenant, CreateTransfer, CreateUser

GOOD = {"from_account_id": "acc_a", "to_account_id": "acc_b", "amount_minor": 100, "currency": "EUR"}


def test_good_transfer_parses() -> None:
    assert CreateTransfer.model_validate(GOOD).amount_minor == 100


@pytest.mark.parametrize(
    "patch",
    [
        {"amount_minor": 1.5},
        {"amount_minor": 100.0},
        {"amount_minor": "100"},
        {"amount_minor": 0},
        {"amount_minor": -5},
        {"amount_minor": True},
        {"amount_minor": 10**16},
        {"currency": "ZZZ"},
        {"currency": "eur"},
        {"currency": "XAU"},
        {"from_account_id": ""},
        {"from_account_id": "a" * 65},
        {"from_account_id": "../etc"},
        {"surprise": 1},
        {"capture": "later"},
        {"reference": "r" * 141},
    ],
)
def test_bad_transfers_are_refused(patch: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateTransfer.model_validate(GOOD | patch)


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_missing_fields_are_refused(missing: str) -> None:
    with pytest.raises(ValidationError):
        CreateTransfer.model_validate({k: v for k, v in GOOD.items() if k != missing})


@pytest.mark.parametrize(
    "body",
    [
        {"external_ref": "u1", "full_name": "A", "country": "XX"},
        {"external_ref": "u1", "full_name": "A", "country": "fr"},
        {"external_ref": "u 1", "full_name": "A", "country": "FR"},
        {"external_ref": "u1", "full_name": "A", "country": "FR", "date_of_birth": "2999-01-01"},
        {"external_ref": "u1", "full_name": "A", "country": "FR", "date_of_birth": "1990-02-30"},
    ],
)
def test_bad_users_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateUser.model_validate(body)


def test_tenant_needs_real_jurisdictions() -> None:
    assert CreateTenant.model_validate({"name": "T", "jurisdictions": ["GB", "FR"]}).jurisdictions == ["GB", "FR"]
    with pytest.raises(ValidationError):
        CreateTenant.model_validate({"name": "T", "jurisdictions": ["ZZ"]})
    with pytest.raises(ValidationError):
        CreateTenant.model_validate({"name": "T", "jurisdictions": []})
