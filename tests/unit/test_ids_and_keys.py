"""Ids: derived ids are stable per (tenant, key) and differ across tenants; API keys are hashed with a pepper."""

from moncore.domain.ids import derived_id, new_id
from moncore.tenancy import keys


def test_derived_id_is_deterministic_and_tenant_scoped() -> None:
    assert derived_id("txn", "ten_a", "key-1") == derived_id("txn", "ten_a", "key-1")
    assert derived_id("txn", "ten_a", "key-1") != derived_id("txn", "ten_b", "key-1")
    assert derived_id("txn", "ten_a", "key-1") != derived_id("txn", "ten_a", "key-2")
    # the separator keeps ("a", "bc") and ("ab", "c") apart
    assert derived_id("txn", "a", "bc") != derived_id("txn", "ab", "c")
    assert len(derived_id("txn", "t", "k")) == len("txn_") + 26


def test_new_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id("acc") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert [i[4:14] for i in ids] == sorted(i[4:14] for i in ids)


def test_api_keys_round_trip_and_hash_depends_on_pepper() -> None:
    issued = keys.generate()
    parsed = keys.parse(issued.api_key)
    assert parsed is not None and parsed[0] == issued.key_id
    stored = keys.keyed_hash(b"pepper-1", *parsed)
    assert issued.api_key.split(".")[-1] not in stored
    assert keys.matches(b"pepper-1", parsed[0], parsed[1], stored)
    assert not keys.matches(b"pepper-2", parsed[0], parsed[1], stored)
    assert not keys.matches(b"pepper-1", parsed[0], parsed[1] + "x", stored)


def test_malformed_keys_are_not_parsed() -> None:
    for bad in ["", "Bearer x", "mc.key_x.y", "mc.key_01ABCDEFGHJKMNPQRSTVWXYZ01.short", "x" * 500]:
        assert keys.parse(bad) is None
