"""Time in one format: RFC 3339 UTC with microseconds and a Z, which sorts lexicographically in time order."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return rfc3339(utc_now())


def parse_instant(text: str, *, field: str = "as_of") -> str:
    """An RFC 3339 instant with an explicit offset, normalised to the stored format (UTC, microseconds, Z), so it
    compares correctly with recorded_at strings. Anything else is a 422."""
    from moncore.domain.errors import ValidationFailed  # noqa: PLC0415 - errors import nothing back

    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
        if moment.tzinfo is None or len(text) < 20 or "T" not in text.upper():
            raise ValueError("an offset is required")
    except ValueError:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T23:59:59Z",
            errors=[{"loc": ["query", field], "msg": "RFC 3339 timestamp with offset"}],
        ) from None
    return rfc3339(moment)
