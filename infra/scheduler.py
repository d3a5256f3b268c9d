"""The local stack's scheduler: fires template.yaml's schedule events (moto accepts schedules, never fires them).

Every `AWS::Serverless::Function` event of Type `ScheduleV2` (EventBridge Scheduler) or `Schedule` (EventBridge rule)
becomes a `Schedule`; a background thread invokes the target function with the event's `Input` at the due times,
through the same worker-process containers the local API Gateway uses (infra/gateway.py FunctionPool), so a job runs
with its function's own Lambda environment in its own container. Each run is logged with its result or its error; a
failing job never stops the scheduler.

Expressions: only what the template family uses is understood, everything else is refused when the template is read
(a schedule that would silently never fire, or fire at the wrong time, is worse than a loud error):

    rate(N minute|minutes|hour|hours|day|days)     every N units, counted from when the scheduler starts
    cron(M H * * ? *)  /  cron(M H ? * * *)        every day at H:M UTC (fixed minute and hour only)

Differences from AWS, on purpose: a rate schedule's first run is one period after the stack starts; occurrences missed
while the machine slept are coalesced into one run; a run is skipped (and logged) while the previous run of the same
schedule is still going; `RetryPolicy` and `FlexibleTimeWindow` are not emulated (a run happens at the window's start).
`StartDate`, `EndDate` and time zones other than UTC are refused.

Environment (read by `options_from_environ`, used by `make run`):
  MONCORE_SCHEDULER        "off" (or 0/false/no) keeps the thread from firing; `trigger()` still works
  MONCORE_SCHEDULER_SPEED  time runs this many times faster (60: `rate(5 minutes)` fires every 5 s); default 1
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from infra import REPO_ROOT
from infra.gateway import FUNCTION_TYPE, FunctionPool, function_spec
from infra.stepfunctions import STATE_MACHINE_TYPE, start_execution
from infra.template import ResolveContext, TemplateError, resolve, resources_of_type
from infra.workers import FunctionError

log = logging.getLogger("infra.scheduler")

SCHEDULE_TYPES = ("ScheduleV2", "Schedule")
MAX_SLEEP_SECONDS = 30.0  # re-read the clock at least this often (a laptop that slept wakes up to due runs)
HISTORY_SIZE = 200
_RESULT_LOG_CHARS = 400
_DISABLED_VALUES = ("off", "0", "false", "no", "disabled")
_UTC_NAMES = ("UTC", "Etc/UTC", "GMT", "Etc/GMT")

# (logical id of the function, event) -> what the function returned; raises whatever the function raised.
Invoker = Callable[[str, Any], Any]


class ScheduleError(ValueError):
    """A schedule the local scheduler cannot honour exactly, or a name that matches no (or several) schedules."""


# ---------------------------------------------------------------- expressions


class Trigger(Protocol):
    @property
    def expression(self) -> str:
        """The expression as written in the template."""
        ...

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        """The first fire time strictly after `after` (aware UTC); rate schedules count periods from `anchor`."""
        ...


@dataclass(frozen=True)
class Rate:
    expression: str
    period: timedelta

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        after, anchor = _utc(after), _utc(anchor)
        periods = (after - anchor) // self.period + 1  # timedelta // timedelta: an exact int, no float rounding
        return anchor + max(1, periods) * self.period


@dataclass(frozen=True)
class DailyCron:
    expression: str
    hour: int
    minute: int

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        after = _utc(after)
        candidate = after.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if candidate <= after:
            candidate += timedelta(days=1)  # UTC has no DST: a calendar day is always 24 hours
        return candidate


_RATE = re.compile(r"rate\((?P<value>\d+) (?P<unit>minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_UNIT = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def parse_expression(expression: str) -> Trigger:
    """`rate(...)` or `cron(...)` (the subset in the module docstring) -> a Trigger; anything else raises."""
    text = str(expression).strip()
    rate = _RATE.fullmatch(text)
    if rate is not None:
        value, unit = int(rate["value"]), rate["unit"]
        if value < 1:
            raise ScheduleError(f"{expression!r}: a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):  # AWS: rate(1 minute), rate(5 minutes)
            raise ScheduleError(f"{expression!r}: AWS wants the singular unit for 1 and the plural otherwise")
        return Rate(text, value * _UNIT[unit.rstrip("s")])
    cron = _CRON.fullmatch(text)
    if cron is not None:
        return _parse_cron(text, cron["fields"].split())
    raise ScheduleError(
        f"{expression!r}: the local scheduler understands rate(N minute(s)|hour(s)|day(s)) and cron(M H * * ? *) only"
    )


def _parse_cron(expression: str, fields: list[str]) -> DailyCron:
    if len(fields) != 6:
        raise ScheduleError(f"{expression!r}: AWS cron has 6 fields (minute hour day-of-month month day-of-week year)")
    minute, hour, day_of_month, month, day_of_week, year = fields
    if {day_of_month, day_of_week} != {"*", "?"} or month != "*" or year != "*":
        raise ScheduleError(
            f"{expression!r}: the local scheduler supports daily crons only: day-of-month and day-of-week are '*' and"
            " '?' (one each, as AWS requires), month and year '*'"
        )
    return DailyCron(
        expression, _cron_number(expression, "hour", hour, 23), _cron_number(expression, "minute", minute, 59)
    )


def _cron_number(expression: str, name: str, text: str, highest: int) -> int:
    if not text.isdigit() or not 0 <= int(text) <= highest:
        raise ScheduleError(f"{expression!r}: the {name} must be a fixed number 0-{highest}, got {text!r}")
    return int(text)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} is naive: the scheduler works in aware UTC datetimes")
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- schedules from the template


@dataclass(frozen=True)
class Schedule:
    function: str  # logical id of the target: a function, or a state machine (`target` says which)
    event: str  # the event's key under the function's Events
    name: str  # the physical schedule (or rule) name
    kind: str  # ScheduleV2 or Schedule
    trigger: Trigger
    input: Any  # the parsed Input JSON; None: no Input (see `payload`)
    enabled: bool
    arn: str
    region: str
    account_id: str
    description: str = ""
    target: str = "function"  # function | state_machine (an execution is started, not awaited)

    @property
    def id(self) -> str:
        return f"{self.function}.{self.event}"

    @property
    def expression(self) -> str:
        return self.trigger.expression

    def payload(self, at: datetime) -> Any:
        """What the function receives: the Input; without one, `{}` (Scheduler) or the Scheduled Event (rule)."""
        if self.input is not None:
            return json.loads(json.dumps(self.input))  # a fresh copy per run
        if self.kind == "ScheduleV2":
            return {}
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": _utc(at).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [self.arn],
            "detail": {},
        }


def load_schedules(template: Mapping[str, Any], ctx: ResolveContext) -> list[Schedule]:
    """Every ScheduleV2/Schedule event of every function (in template order), intrinsics resolved; refuses what the
    local scheduler cannot honour (see the module docstring) with a ScheduleError naming the function and event."""
    schedules = []
    targets = [(lid, r, "function") for lid, r in resources_of_type(template, FUNCTION_TYPE).items()]
    targets += [(lid, r, "state_machine") for lid, r in resources_of_type(template, STATE_MACHINE_TYPE).items()]
    for logical_id, resource, target in targets:
        if not _condition_holds(resource.get("Condition"), ctx):
            continue
        for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") not in SCHEDULE_TYPES:
                continue
            try:
                found = _schedule(logical_id, event_name, event["Type"], event.get("Properties") or {}, ctx)
            except ScheduleError as error:
                raise ScheduleError(f"{logical_id} event {event_name}: {error}") from None
            schedules.append(replace(found, target=target))
    return schedules


def _condition_holds(condition: Any, ctx: ResolveContext) -> bool:
    if condition is None:
        return True
    if condition not in ctx.conditions:
        raise TemplateError(f"unknown condition {condition!r} (evaluate the template's conditions first)")
    return ctx.conditions[condition]


def _schedule(logical_id: str, event_name: str, kind: str, raw: Mapping[str, Any], ctx: ResolveContext) -> Schedule:
    properties = resolve(dict(raw), ctx)
    expression_key = "ScheduleExpression" if kind == "ScheduleV2" else "Schedule"
    if expression_key not in properties:
        raise ScheduleError(f"{kind} needs {expression_key}")
    trigger = parse_expression(properties[expression_key])
    for unsupported in ("StartDate", "EndDate"):
        if unsupported in properties:
            raise ScheduleError(f"{unsupported} is not emulated by the local scheduler")
    zone = properties.get("ScheduleExpressionTimezone", "UTC")
    if zone not in _UTC_NAMES:
        raise ScheduleError(f"ScheduleExpressionTimezone {zone!r}: the local scheduler runs UTC schedules only")
    state = str(properties.get("State", "ENABLED")).upper()
    if state not in ("ENABLED", "DISABLED"):
        raise ScheduleError(f"State must be ENABLED or DISABLED, got {state!r}")
    enabled = state == "ENABLED" and properties.get("Enabled", True) not in (False, "false", "False")
    name = str(properties.get("Name") or f"{ctx.refs.get(logical_id, logical_id)}-{event_name}")
    service, resource = (
        ("scheduler", f"schedule/default/{name}") if kind == "ScheduleV2" else ("events", f"rule/{name}")
    )
    return Schedule(
        function=logical_id,
        event=event_name,
        name=name,
        kind=kind,
        trigger=trigger,
        input=_input(properties.get("Input")),
        enabled=enabled,
        arn=f"arn:{ctx.partition}:{service}:{ctx.region}:{ctx.account_id}:{resource}",
        region=ctx.region,
        account_id=ctx.account_id,
        description=str(properties.get("Description", "")),
    )


def _input(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except json.JSONDecodeError as error:
        raise ScheduleError(f"Input is not JSON ({error}): {text!r}") from None


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    schedule: str  # Schedule.id
    due_at: datetime | None  # None: triggered by hand
    started_at: datetime
    duration_ms: int
    ok: bool
    result: Any = None
    error: str | None = None  # "ErrorType: message"


class DueRun(NamedTuple):
    schedule: Schedule
    at: datetime


@dataclass(frozen=True)
class SchedulerOptions:
    enabled: bool = True
    speed: float = 1.0


def options_from_environ(environ: Mapping[str, str]) -> SchedulerOptions:
    """MONCORE_SCHEDULER (off disables firing) and MONCORE_SCHEDULER_SPEED (a factor > 0)."""
    enabled = environ.get("MONCORE_SCHEDULER", "on").strip().lower() not in _DISABLED_VALUES
    text = environ.get("MONCORE_SCHEDULER_SPEED", "").strip() or "1"
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"MONCORE_SCHEDULER_SPEED must be a number > 0, got {text!r}")
    return SchedulerOptions(enabled=enabled, speed=speed)


@dataclass
class _State:
    next_at: dict[str, datetime] = field(default_factory=dict)
    running: dict[str, threading.Thread] = field(default_factory=dict)


class Scheduler:
    """Fires the template's schedules at their due times from a background thread (start()/stop()).

    `speed` makes the scheduler's clock run faster than the real one (tests, demos); `enabled=False` keeps the thread
    from firing while `trigger()` still runs a schedule by hand. Targets run in `pools` (the gateway's, for functions
    it already runs) or in pools of the scheduler's own, built the same way; `invoke` replaces both (unit tests).
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        ctx: ResolveContext,
        *,
        base_dir: Path = REPO_ROOT,
        pools: Mapping[str, FunctionPool] | None = None,
        invoke: Invoker | None = None,
        enabled: bool = True,
        speed: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
        max_containers: int = 2,
    ) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.schedules = load_schedules(template, ctx)
        self.enabled = enabled
        self.speed = speed
        self._clock = clock
        self._own_pools: dict[str, FunctionPool] = {}
        self._state_machines: set[str] = set()
        self._pools: dict[str, FunctionPool] = {}
        if invoke is None:
            functions = (schedule.function for schedule in self.schedules if schedule.target == "function")
            self._state_machines = {s.function for s in self.schedules if s.target == "state_machine"}
            for logical_id in dict.fromkeys(functions):
                pool = (pools or {}).get(logical_id)
                if pool is None:
                    spec = function_spec(template, logical_id, ctx, base_dir)
                    pool = self._own_pools[logical_id] = FunctionPool(spec, max_containers)
                self._pools[logical_id] = pool
        self._ctx = ctx
        self._invoke = invoke or self._invoke_pool
        self._lock = threading.Lock()
        self._state = _State()
        self._history: deque[Run] = deque(maxlen=HISTORY_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset_timetable()

    # ------------------------------------------------------------ clock and timetable

    def now(self) -> datetime:
        """The scheduler's clock: the real one, or one running `speed` times faster since the last (re)anchor."""
        real = _utc(self._clock())
        return self._origin + (real - self._origin) * self.speed

    def _reset_timetable(self) -> None:
        self._origin = _utc(self._clock())  # rate schedules count their periods from here
        with self._lock:
            self._state.next_at = {
                schedule.id: schedule.trigger.next_after(self._origin, self._origin)
                for schedule in self.schedules
                if schedule.enabled
            }

    def next_run(self, name: str) -> datetime | None:
        """When the schedule fires next (scheduler clock), or None if it is disabled."""
        schedule = self.find(name)
        with self._lock:
            return self._state.next_at.get(schedule.id)

    def due(self, now: datetime | None = None) -> list[DueRun]:
        """Enabled schedules whose next fire time is at or before `now` (default: the scheduler's clock)."""
        moment = self.now() if now is None else _utc(now)
        with self._lock:
            return self._due_locked(moment)

    def _due_locked(self, moment: datetime) -> list[DueRun]:
        next_at = self._state.next_at
        return [DueRun(s, next_at[s.id]) for s in self.schedules if s.id in next_at and next_at[s.id] <= moment]

    def _take_due(self, now: datetime) -> list[DueRun]:
        """The due runs, with each one's next fire time moved past `now` (missed occurrences are coalesced)."""
        with self._lock:
            due = self._due_locked(now)
            for schedule, at in due:
                upcoming = schedule.trigger.next_after(now, self._origin)
                self._state.next_at[schedule.id] = upcoming
                missed = _missed(schedule.trigger, at, now, self._origin)
                if missed:
                    log.warning("schedule %s: %d missed occurrence(s) after %s coalesced", schedule.id, missed, at)
        return due

    def run_due(self, now: datetime | None = None) -> list[Run]:
        """Run every due schedule now, one after the other, in this thread; returns the runs (tests, tools)."""
        moment = self.now() if now is None else _utc(now)
        return [self._run(schedule, at) for schedule, at in self._take_due(moment)]

    # ------------------------------------------------------------ running

    def find(self, name: str) -> Schedule:
        """A schedule by event name ("ExpireHolds"), "Function.Event", or physical Name."""
        matches = [s for s in self.schedules if name in (s.event, s.id, s.name)]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(s.id for s in self.schedules) or "none"
        if not matches:
            raise ScheduleError(f"no schedule named {name!r} (known: {known})")
        raise ScheduleError(
            f"{name!r} names several schedules ({', '.join(s.id for s in matches)}): use Function.Event"
        )

    def trigger(self, name: str) -> Run:
        """Run a schedule now, in this thread (disabled ones too: it is an explicit request); the timetable is
        unchanged. Returns the run; a failing job is reported in it, not raised."""
        return self._run(self.find(name), None)

    def runs(self) -> list[Run]:
        """The latest runs (oldest first), background and manual."""
        with self._lock:
            return list(self._history)

    def _invoke_pool(self, function: str, event: Any) -> Any:
        if function in self._state_machines:
            return start_execution(self._ctx.refs[function], event)
        return self._pools[function].invoke(event)

    def _run(self, schedule: Schedule, due_at: datetime | None) -> Run:
        started_at, started = utc_now(), time.monotonic()
        how = "by hand" if due_at is None else f"due {due_at:%Y-%m-%dT%H:%M:%SZ}"
        try:
            result = self._invoke(schedule.function, schedule.payload(due_at or self.now()))
        except Exception as error:  # a failing job is logged and recorded; the scheduler carries on
            run = Run(schedule.id, due_at, started_at, _ms_since(started), ok=False, error=_error_text(error))
            log.error(
                "schedule %s (%s) -> %s failed after %d ms: %s%s",
                schedule.id,
                how,
                schedule.function,
                run.duration_ms,
                run.error,
                f"\n{error.trace}" if isinstance(error, FunctionError) and error.trace else "",
            )
        else:
            run = Run(schedule.id, due_at, started_at, _ms_since(started), ok=True, result=result)
            log.info(
                "schedule %s (%s) -> %s ok in %d ms: %s",
                schedule.id,
                how,
                schedule.function,
                run.duration_ms,
                _summary(result),
            )
        with self._lock:
            self._history.append(run)
        return run

    def _dispatch(self, schedule: Schedule, due_at: datetime) -> None:
        # Runs overlap other schedules' runs (a long rebuild must not delay the hold sweep), never their own.
        with self._lock:
            previous = self._state.running.get(schedule.id)
            if previous is not None and previous.is_alive():
                log.warning("schedule %s: previous run still going, the run due %s is skipped", schedule.id, due_at)
                return
            thread = threading.Thread(
                target=self._run, args=(schedule, due_at), name=f"schedule-{schedule.id}", daemon=True
            )
            self._state.running[schedule.id] = thread
        thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.now()
            for schedule, at in self._take_due(now):
                self._dispatch(schedule, at)
            with self._lock:
                upcoming = min(self._state.next_at.values(), default=None)
            wait = MAX_SLEEP_SECONDS if upcoming is None else (upcoming - now).total_seconds() / self.speed
            self._stop.wait(min(max(wait, 0.0), MAX_SLEEP_SECONDS))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Scheduler:
        """Start firing (a no-op when disabled). Rate schedules count their periods from now."""
        if self._thread is not None:
            return self
        self._reset_timetable()
        if not self.enabled:
            log.info("scheduler disabled: schedules run only when triggered by hand")
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop firing, wait briefly for runs in progress, then stop the scheduler's own containers."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            running = [t for t in self._state.running.values() if t.is_alive()]
        deadline = time.monotonic() + timeout
        for run in running:
            run.join(max(0.0, deadline - time.monotonic()))
            if run.is_alive():
                log.warning("%s still running at shutdown: its container is stopped", run.name)
        for pool in self._own_pools.values():
            pool.close()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def describe(self) -> list[str]:
        """One line per schedule, for the local stack's banner."""
        lines, now = [], self.now()
        for schedule in self.schedules:
            upcoming = self.next_run(schedule.id)
            when = "DISABLED" if not schedule.enabled else "fires only by hand"
            if upcoming is not None and self.enabled:  # the scheduler's clock, and the real time until then
                when = f"next {upcoming:%Y-%m-%d %H:%M:%SZ} ({_in((upcoming - now).total_seconds() / self.speed)})"
            target = json.dumps(schedule.input) if schedule.input is not None else "(no input)"
            lines.append(f"{schedule.event:<20} {schedule.expression:<20} {when:<36} {schedule.function} {target}")
        return lines


def _missed(trigger: Trigger, due_at: datetime, now: datetime, anchor: datetime) -> int:
    missed, moment = 0, trigger.next_after(due_at, anchor)
    while moment <= now and missed < 1000:
        missed, moment = missed + 1, trigger.next_after(moment, anchor)
    return missed


def _in(seconds: float) -> str:
    if seconds < 120:
        return f"in {max(0, round(seconds))} s"
    if seconds < 2 * 3600:
        return f"in {round(seconds / 60)} min"
    return f"in {seconds / 3600:.1f} h"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _error_text(error: Exception) -> str:
    error_type = error.error_type if isinstance(error, FunctionError) else type(error).__name__
    return f"{error_type}: {error}"


def _summary(result: Any) -> str:
    text = json.dumps(result, default=str)
    return text if len(text) <= _RESULT_LOG_CHARS else text[:_RESULT_LOG_CHARS] + "..."
