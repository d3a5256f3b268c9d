"""Rolling-window velocity of a user's money in one currency: counts and amounts in and out over the last hour, day
and 30 days. Pure, no I/O (docs/aml.md).

Storage shape (store/velocity.py): one item per (tenant, user, currency) whose attributes are time buckets, each
ADDed by the posting itself (same TransactWriteItems, so the counters never drift from the ledger):

    <dir><measure>_<granularity><bucket start>      e.g. oc_m202611221405  oa_h2026112214  ic_d20261122
    dir: o (out) | i (in); measure: c (count) | a (amount, minor units); granularity: m (5 minutes) | h (hour) | d (day)
    plus lifetime totals oc_all, oa_all, ic_all, ia_all.

A window sums the buckets of its granularity whose start lies inside it: the last hour is the current 5-minute bucket
and the 11 before it (55 to 60 minutes of history), the last 24 hours the current hour and the 23 before, the last
30 days the current UTC day and the 29 before. Sliding windows at bucket granularity: exact enough for risk rules,
and bounded: an item never holds more than 2 x 2 x (12 + 24 + 30) live buckets, the older ones are removed by the
next posting that reads the item (`stale_attributes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from moncore.domain.errors import InvariantViolation


class Direction(StrEnum):
    OUT = "o"
    IN = "i"


@dataclass(frozen=True, slots=True)
class Granularity:
    code: str
    step: timedelta
    buckets: int  # how many buckets (the current one included) make the window
    stamp_format: str

    def start(self, moment: datetime) -> datetime:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        step_s = int(self.step.total_seconds())
        return epoch + timedelta(seconds=(int((moment - epoch).total_seconds()) // step_s) * step_s)

    def stamp(self, moment: datetime) -> str:
        return self.start(moment).strftime(self.stamp_format)


FIVE_MINUTES = Granularity("m", timedelta(minutes=5), 12, "%Y%m%d%H%M")
HOUR = Granularity("h", timedelta(hours=1), 24, "%Y%m%d%H")
DAY = Granularity("d", timedelta(days=1), 30, "%Y%m%d")
GRANULARITIES = (FIVE_MINUTES, HOUR, DAY)
WINDOW_NAMES = {"m": "1h", "h": "24h", "d": "30d"}
LIFETIME = "all"
VELOCITY_TTL = timedelta(days=31)  # an item untouched for longer than the longest window says nothing any more


@dataclass(frozen=True, slots=True)
class Window:
    count: int = 0
    amount_minor: int = 0


@dataclass(frozen=True, slots=True)
class Velocity:
    """A user's movements in one currency in each window, this request excluded."""

    out_1h: Window = Window()
    out_24h: Window = Window()
    out_30d: Window = Window()
    in_1h: Window = Window()
    in_24h: Window = Window()
    in_30d: Window = Window()
    in_lifetime: Window = Window()
    out_lifetime: Window = Window()

    def record(self) -> dict[str, list[int]]:
        """[count, amount_minor] per window: part of the AML inputs (hashed into the AML event)."""
        return {name: [getattr(self, name).count, getattr(self, name).amount_minor] for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class VelocityCharge:
    """What one posting adds to one user's velocity item: one movement of `amount_minor` in `direction`, at
    `recorded_at`; `stale` are the item's out-of-window bucket attributes to remove in the same update."""

    user_id: str
    currency: str
    direction: Direction
    amount_minor: int
    recorded_at: str
    stale: tuple[str, ...] = ()

    def additions(self) -> dict[str, int]:
        """Attribute -> value to ADD: one count and one amount per granularity, and the lifetime totals."""
        if self.amount_minor <= 0:
            raise InvariantViolation(f"a velocity charge must be positive, got {self.amount_minor}")
        moment = parse(self.recorded_at)
        added: dict[str, int] = {}
        for bucket in [*(f"{g.code}{g.stamp(moment)}" for g in GRANULARITIES), LIFETIME]:
            added[f"{self.direction.value}c_{bucket}"] = 1
            added[f"{self.direction.value}a_{bucket}"] = self.amount_minor
        return added


def parse(recorded_at: str) -> datetime:
    return datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).astimezone(UTC)


def _bucket(name: str) -> tuple[str, str, str, str] | None:
    """(direction, measure, granularity code, stamp) of a bucket attribute, None for any other attribute."""
    head, sep, tail = name.partition("_")
    if not sep or len(head) != 2 or head[0] not in "oi" or head[1] not in "ca" or not tail:
        return None
    if tail == LIFETIME:
        return head[0], head[1], LIFETIME, ""
    if tail[0] not in WINDOW_NAMES or not tail[1:].isdigit():
        return None
    return head[0], head[1], tail[0], tail[1:]


def _oldest_stamps(now: datetime) -> dict[str, str]:
    """Per granularity, the stamp of the oldest bucket still inside its window at `now`."""
    return {g.code: g.stamp(g.start(now) - g.step * (g.buckets - 1)) for g in GRANULARITIES}


def summarize(attributes: Mapping[str, int], now: str) -> Velocity:
    """The windows at `now` from a velocity item's attributes (an empty mapping for a user with no movement yet).
    Buckets stamped after `now` (clock skew between writers) count as current."""
    oldest = _oldest_stamps(parse(now))
    totals: dict[str, list[int]] = {}
    for name, value in attributes.items():
        parsed = _bucket(name)
        if parsed is None:
            continue
        direction, measure, code, stamp = parsed
        if code != LIFETIME and stamp < oldest[code]:
            continue
        window = LIFETIME if code == LIFETIME else WINDOW_NAMES[code]
        key = f"{'out' if direction == 'o' else 'in'}_{'lifetime' if window == LIFETIME else window}"
        slot = totals.setdefault(key, [0, 0])
        slot[0 if measure == "c" else 1] += int(value)
    return Velocity(**{key: Window(count, amount) for key, (count, amount) in totals.items()})


def stale_attributes(attributes: Mapping[str, int], now: str) -> tuple[str, ...]:
    """The bucket attributes that lie wholly before their window at `now`: safe to remove (no window reads them)."""
    oldest = _oldest_stamps(parse(now))
    stale = []
    for name in attributes:
        parsed = _bucket(name)
        if parsed is not None and parsed[2] != LIFETIME and parsed[3] < oldest[parsed[2]]:
            stale.append(name)
    return tuple(sorted(stale))
