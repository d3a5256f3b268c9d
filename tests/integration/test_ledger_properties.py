"""Property-based stateful tests of the ledger (issue 3, part 7) against the real store (DynamoDB Local).

Hypothesis drives random sequences of fundings, transfers (settled at once or held), captures, voids, reversals,
hold expiry, FX conversions and replays through the kernel services in-process (no HTTP: faster, same code below the
handlers). A plain-Python reference model (dicts of ints) follows each step by the rules written out again here, not
by calling the domain functions, so a broken rule in the kernel shows up as a disagreement instead of agreeing with
itself. Invalid steps (capture of a SETTLED transaction, over-capture, reversal of a hold, overdraft, a reused key
with another body) are drawn too: each must raise its DomainError and change nothing.

After every step the invariants are read back from the store:
- every account's balance items (all shards, one consistent BatchGetItem) sum to the model's balance, with
  available == posted - pending_out and no user account below 0; each account the step moved is also read through
  the API view (LedgerService.get_account; store.balances.read_balance for system accounts);
- per currency over all accounts, system ones included, posted sums to zero and incoming holds equal outgoing holds
  (invariant 1 seen from the balances);
- each transaction the step touched (created, acted on, or refused to act on) has the model's status and
  captured/held/released/reversed amounts in its view, one lifecycle step per event, and legs summing to zero per
  currency per event;
- one account (in turn) equals the sum of its ledger entries (invariant 2).
At the end of each run every transaction, every account's API balance and every account's entries are checked, and
no leg may sit on an account the model does not know.

Expiry: the sweep re-checks the real clock, so "short" holds expire 100 ms after creation and the test waits for the
ones a sweep will look at; long holds (days away) must stay open even when the sweep is given a far-future `now`.
Settings: 15 runs x 25 steps, derandomized (CI reproducible), no shrinking unless MONCORE_PROPERTY_SHRINK=1.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

pytestmark = pytest.mark.xdist_group("integration")

SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,  # the same sequences on every run: CI failures reproduce, no example database needed
    database=None,
    # Shrinking against a real store can take minutes (each attempt builds a tenant); a failure prints its whole
    # sequence (at most 25 steps) anyway. MONCORE_PROPERTY_SHRINK=1 shrinks it when debugging locally.
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([Phase.shrink] if os.environ.get("MONCORE_PROPERTY_SHRINK") == "1" else []),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CURRENCY = "EUR"
FX_CURRENCY = "USD"  # the second currency, used only when the FX service exists
MINOR_DIGITS = {"EUR": 2, "USD": 2}  # ISO 4217 exponents of the currencies used here
# Accounts per user (FX_CURRENCY added to each when FX exists): few, so the per-step reads stay cheap.
USER_ACCOUNTS = ((CURRENCY, CURRENCY), (CURRENCY,))
EXPIRIES = ["short", "short", "default", "days"]  # hold expiry choices (see LedgerMachine.hold)
SHORT_HOLD = timedelta(milliseconds=100)  # holds the sweep may release during a run (the sweep checks the real clock)
ZERO = {"posted_minor": 0, "pending_in_minor": 0, "pending_out_minor": 0, "available_minor": 0, "pending_minor": 0}
FAR_PAST = "2000-01-01T00:00:00.000000Z"
FAR_FUTURE = "2100-01-01T00:00:00.000000Z"
STATUS = {"InvalidStateTransition": 409, "IdempotencyKeyReused": 409, "ValidationFailed": 422, "InsufficientFunds": 422}
OUTCOMES: Counter[str] = Counter()  # how often each step succeeded or was refused, printed by the test (pytest -s)


def label(body: dict[str, Any]) -> str:
    return " manual" if body.get("capture") == "manual" else ""


def stamp(moment: datetime) -> str:
    """The stored instant format (RFC 3339 UTC, microseconds, Z), written out here rather than imported."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------- reference model
@dataclass
class ModelAccount:
    id: str
    currency: str
    user: bool  # user accounts have a floor of 0; system accounts have none
    owner: str | None = None  # the user holding it
    posted: int = 0
    pending_in: int = 0
    pending_out: int = 0

    @property
    def available(self) -> int:
        return self.posted - self.pending_out

    def balance(self) -> dict[str, int]:
        return {
            "posted_minor": self.posted,
            "pending_in_minor": self.pending_in,
            "pending_out_minor": self.pending_out,
            "available_minor": self.available,
            "pending_minor": self.pending_in - self.pending_out,
        }


@dataclass
class ModelTxn:
    id: str
    type: str  # funding | transfer | reversal | fx_conversion
    currency: str
    amount: int
    payer: str
    payee: str
    capture: str = "auto"
    status: str = "SETTLED"
    captured: int = 0
    released: int = 0
    reversed: int = 0
    events: int = 1
    hold_expires_at: str | None = None
    reverses: str | None = None
    settled: dict[str, int] = field(default_factory=dict)  # net SETTLED movement per account (what a reversal undoes)

    @property
    def held(self) -> int:
        return self.amount - self.captured - self.released if self.status == "AUTHORIZED" else 0

    @property
    def reversible(self) -> int:
        return self.captured - self.reversed if self.status == "SETTLED" else 0


@dataclass(frozen=True)
class Sent:
    """A request that succeeded, kept so it can be sent again with the same key."""

    kind: str  # fund | transfer | capture | void | reverse | fx
    key: str
    body: dict[str, Any]
    txn_id: str  # the transaction it answered
    target: str | None = None  # the transaction a lifecycle step acted on


# ------------------------------------------------------------------------------------------------- the machine
class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from moncore.domain.context import Caller
        from moncore.ledger.lifecycle import LifecycleService
        from moncore.ledger.service import LedgerService
        from moncore.tenancy.service import TenancyService

        OUTCOMES["(runs)"] += 1
        self.ledger = LedgerService()
        self.lifecycle = LifecycleService()
        admin = Caller(tenant_id=None, actor="key:test-admin", role="admin", correlation_id="prop-setup")
        self.tenant_id = TenancyService().create_tenant(admin, name="Property Tenant", jurisdictions=["FR"]).id
        self.steps = 0
        self.accounts: dict[str, ModelAccount] = {}
        self.txns: dict[str, ModelTxn] = {}
        self.sent: list[Sent] = []
        self.touched: set[str] = set()  # transactions the current step acted on: their views are checked after it
        self.system_refs: dict[str, Any] = {}  # account id -> AccountRef of system accounts (immutable once created)
        self.seen: dict[str, dict[str, int]] = {}  # balances at the last check: what moved since is read via the API
        for n, currencies in enumerate(USER_ACCOUNTS):
            profile = {"external_ref": f"u{n}-{uuid.uuid4().hex}", "full_name": "Ada", "country": "FR"}
            request = self._create("POST /v1/users", profile)
            user_id = self.ledger.create_user(self.caller(), request, **profile, date_of_birth=None).body["id"]
            for currency in (*currencies, FX_CURRENCY):
                request = self._create("POST /v1/accounts", {"user_id": user_id, "currency": currency})
                account = self.ledger.create_account(self.caller(), request, user_id=user_id, currency=currency)
                self.accounts[account.body["id"]] = ModelAccount(account.body["id"], currency, True, user_id)
        for currency in sorted({a.currency for a in self.accounts.values()}):
            purposes = ["funding_clearing", "fx_position"]
            for purpose in purposes:  # system accounts, named sys_<purpose>_<ccy>, created on first use
                self.accounts[f"sys_{purpose}_{currency.lower()}"] = ModelAccount(
                    f"sys_{purpose}_{currency.lower()}", currency, False
                )

    # ------------------------------------------------------------------ plumbing
    def caller(self) -> Any:
        from moncore.domain.context import Caller

        return Caller(tenant_id=self.tenant_id, actor="key:test", role="tenant", correlation_id=f"prop-{self.steps}")

    @staticmethod
    def _create(route: str, body: dict[str, Any]) -> Any:
        from moncore.http.idempotency import request_identity

        return request_identity(uuid.uuid4().hex, route, body)

    def send(self, kind: str, key: str, body: dict[str, Any], target: str | None = None) -> Any:
        """Call the kernel service behind the route of `kind`, as its handler would (route string included)."""
        from moncore.http.idempotency import request_identity

        route = {
            "fund": "POST /v1/fundings",
            "transfer": "POST /v1/transfers",
            "fx": "POST /v1/fx/conversions",
        }.get(kind) or f"POST /v1/transactions/{target}/{kind}"
        request = request_identity(key, route, body)
        who = self.caller()
        if kind == "fund":
            return self.ledger.fund(who, request, **body)
        if kind == "transfer":
            return self.ledger.transfer(who, request, **body)
        if kind == "capture":
            return self.lifecycle.capture(who, request, target or "", amount_minor=body.get("amount_minor"))
        if kind == "void":
            return self.lifecycle.void(who, request, target or "", amount_minor=body.get("amount_minor"))
        if kind == "reverse":
            return self.lifecycle.reverse(
                who, request, target or "", amount_minor=body.get("amount_minor"), reason=body["reason"]
            )
        if kind == "fx":
            from moncore.ledger.fx import FxService

            return FxService().convert(who, request, **body)
        raise AssertionError(kind)

    def first(self, kind: str, body: dict[str, Any], target: str | None = None) -> tuple[Sent, dict[str, Any]]:
        """Send a new request (fresh key) that the model says must succeed; remember it for replays."""
        key = uuid.uuid4().hex
        result = self.send(kind, key, body, target)
        assert result.replayed is False
        OUTCOMES[f"{kind}{label(body)}: done"] += 1
        sent = Sent(kind, key, body, result.body["id"], target)
        self.sent.append(sent)
        self.touched.update(t for t in (sent.txn_id, target) if t)
        return sent, result.body

    def refused(
        self, error_name: str, kind: str, body: dict[str, Any], target: str | None = None, key: str | None = None
    ) -> None:
        """Send a request the model says must fail with `error_name`; a creating request must leave no transaction."""
        from moncore.domain import errors
        from moncore.domain.ids import derived_id
        from moncore.store import ledger as ledger_store

        key = key or uuid.uuid4().hex
        self.touched.update(t for t in (target,) if t)
        error: type[Exception] = getattr(errors, error_name)
        with pytest.raises(error) as raised:
            self.send(kind, key, body, target)
        assert type(raised.value).__name__ == error_name, raised.value
        assert raised.value.status == STATUS[error_name], raised.value  # type: ignore[attr-defined]
        OUTCOMES[f"{kind}{label(body)}: {error_name}"] += 1
        if kind in {"fund", "transfer", "reverse", "fx"} and not any(s.key == key for s in self.sent):
            assert ledger_store.load_transaction(self.tenant_id, derived_id("txn", self.tenant_id, key)) is None

    def move(self, account_id: str, *, posted: int = 0, pending_in: int = 0, pending_out: int = 0) -> None:
        account = self.accounts[account_id]
        account.posted += posted
        account.pending_in += pending_in
        account.pending_out += pending_out

    def user_accounts(self, currency: str | None = None) -> list[str]:
        return [a.id for a in self.accounts.values() if a.user and currency in (None, a.currency)]

    # ------------------------------------------------------------------ rules: money in and between users
    @initialize(data=st.data(), amounts=st.lists(st.integers(0, 20_000), min_size=8, max_size=8))
    def seed(self, data: st.DataObject, amounts: list[int]) -> None:
        """Some money to move (a funding or none per user account) and a few holds to capture, void or expire (one
        rule among ten would open too few of them in 25 steps)."""
        for account_id, amount in zip(self.user_accounts(), amounts, strict=False):
            if amount:
                self.fund(account_id, amount)
        for _ in range(data.draw(st.integers(1, 4), label="holds")):
            self.hold(data, data.draw(st.sampled_from(EXPIRIES), label="expiry"))

    @rule(data=st.data(), amount=st.integers(1, 10_000))
    def fund_account(self, data: st.DataObject, amount: int) -> None:
        self.fund(data.draw(st.sampled_from(self.user_accounts())), amount)

    def fund(self, account_id: str, amount: int) -> None:
        currency = self.accounts[account_id].currency
        body = {"account_id": account_id, "amount_minor": amount, "currency": currency}
        sent, view = self.first("fund", body)
        clearing = f"sys_funding_clearing_{currency.lower()}"
        self.move(clearing, posted=-amount)
        self.move(account_id, posted=amount)
        self.txns[sent.txn_id] = ModelTxn(
            sent.txn_id,
            "funding",
            currency,
            amount,
            clearing,
            account_id,
            captured=amount,
            settled={clearing: -amount, account_id: amount},
        )
        assert view["status"] == "SETTLED"

    def draw_pair(self, data: st.DataObject) -> tuple[str, str]:
        source = data.draw(st.sampled_from(self.user_accounts()), label="from")
        others = [a for a in self.user_accounts(self.accounts[source].currency) if a != source]
        return source, data.draw(st.sampled_from(others), label="to")

    @staticmethod
    def draw_amount(data: st.DataObject, limit: int, *, rest: bool = False) -> Any:
        """An amount within `limit` mostly, above it one time in four (the refusal path), or None (the rest of
        it) when `rest` is allowed."""
        within, above = st.integers(1, max(limit, 1)), st.integers(limit + 1, limit + 500)
        choices = [within, within, above] + ([st.none()] if rest else [within])
        return data.draw(st.sampled_from(choices).flatmap(lambda amounts: amounts), label="amount")

    @rule(data=st.data())
    def transfer_auto(self, data: st.DataObject) -> None:
        source, destination = self.draw_pair(data)
        if data.draw(st.integers(0, 9), label="to itself") == 0:
            body = self.transfer_body(source, source, 1, "auto", None)
            self.refused("ValidationFailed", "transfer", body)
            return
        amount = self.draw_amount(data, self.accounts[source].available)
        body = self.transfer_body(source, destination, amount, "auto", None)
        if amount > self.accounts[source].available:
            self.refused("InsufficientFunds", "transfer", body)
            return
        sent, _ = self.first("transfer", body)
        self.move(source, posted=-amount)
        self.move(destination, posted=amount)
        self.txns[sent.txn_id] = ModelTxn(
            sent.txn_id,
            "transfer",
            body["currency"],
            amount,
            source,
            destination,
            captured=amount,
            settled={source: -amount, destination: amount},
        )

    @rule(data=st.data(), expiry=st.sampled_from(EXPIRIES))
    def transfer_manual(self, data: st.DataObject, expiry: str) -> None:
        self.hold(data, expiry)

    def hold(self, data: st.DataObject, expiry: str) -> None:
        """A manual-capture transfer: a hold expiring in 100 ms ("short"), in 7 days (the default) or in 1-30 days."""
        source, destination = self.draw_pair(data)
        amount = self.draw_amount(data, self.accounts[source].available)
        hold_expires_at = None
        if expiry == "short":
            hold_expires_at = stamp(datetime.now(UTC) + SHORT_HOLD)
        elif expiry == "days":
            hold_expires_at = stamp(datetime.now(UTC) + timedelta(days=data.draw(st.integers(1, 30), label="days")))
        body = self.transfer_body(source, destination, amount, "manual", hold_expires_at)
        if amount > self.accounts[source].available:
            self.refused("InsufficientFunds", "transfer", body)
            return
        sent, view = self.first("transfer", body)
        if hold_expires_at is not None:
            assert view["hold_expires_at"] == hold_expires_at
        self.move(source, pending_out=amount)
        self.move(destination, pending_in=amount)
        self.txns[sent.txn_id] = ModelTxn(
            sent.txn_id,
            "transfer",
            body["currency"],
            amount,
            source,
            destination,
            capture="manual",
            status="AUTHORIZED",
            hold_expires_at=view["hold_expires_at"],
        )

    def transfer_body(
        self, source: str, destination: str, amount: int, capture: str, expires: str | None
    ) -> dict[str, Any]:
        return {
            "from_account_id": source,
            "to_account_id": destination,
            "amount_minor": amount,
            "currency": self.accounts[source].currency,
            "reference": "prop",
            "capture": capture,
            "hold_expires_at": expires,
        }

    # ------------------------------------------------------------------ rules: lifecycle steps
    def draw_txn(self, data: st.DataObject, preferred: list[str]) -> ModelTxn:
        """A transaction the step applies to (`preferred`), or sometimes any transaction (mostly the refusal path)."""
        everything = list(self.txns)
        choices = st.sampled_from([*[st.sampled_from(preferred)] * 3, st.sampled_from(everything)] if preferred else [])
        chosen = st.sampled_from(everything) if not preferred else choices.flatmap(lambda txns: txns)
        return self.txns[data.draw(chosen, label="txn")]

    # Choices are drawn from lists in creation order, never sorted by id: ids are random per run, and Hypothesis
    # needs the same draws to pick the same things when it replays or shrinks a sequence.
    def open_holds(self) -> list[str]:
        return [t.id for t in self.txns.values() if t.status == "AUTHORIZED"]

    @precondition(lambda self: bool(self.open_holds()))
    @rule(data=st.data())
    def capture(self, data: st.DataObject) -> None:
        txn = self.draw_txn(data, self.open_holds())
        amount = self.draw_amount(data, txn.held, rest=True)
        body = {} if amount is None else {"amount_minor": amount}
        if txn.status != "AUTHORIZED":
            self.refused("InvalidStateTransition", "capture", body, txn.id)
            return
        amount = txn.held if amount is None else amount
        if amount > txn.held:
            self.refused("ValidationFailed", "capture", body, txn.id)
            return
        _, view = self.first("capture", body, txn.id)
        assert view["id"] == txn.id
        self.move(txn.payer, pending_out=-amount, posted=-amount)
        self.move(txn.payee, pending_in=-amount, posted=amount)
        txn.status = "SETTLED" if amount == txn.held else "AUTHORIZED"
        txn.captured += amount
        txn.events += 1
        txn.settled[txn.payer] = txn.settled.get(txn.payer, 0) - amount
        txn.settled[txn.payee] = txn.settled.get(txn.payee, 0) + amount

    @precondition(lambda self: bool(self.open_holds()))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        """Partly captured holds are preferred: releasing the rest of one must leave it SETTLED, not REVERSED."""
        captured = [t for t in self.open_holds() if self.txns[t].captured]
        txn = self.draw_txn(data, captured or self.open_holds())
        amount = self.draw_amount(data, txn.held, rest=True)
        body = {} if amount is None else {"amount_minor": amount}
        if txn.status != "AUTHORIZED":
            self.refused("InvalidStateTransition", "void", body, txn.id)
            return
        amount = txn.held if amount is None else amount
        if amount > txn.held:
            self.refused("ValidationFailed", "void", body, txn.id)
            return
        _, view = self.first("void", body, txn.id)
        assert view["id"] == txn.id
        self.release(txn, amount)

    def release(self, txn: ModelTxn, amount: int) -> None:
        """The rest (or part) of a hold given back: by a void or by the expiry sweep."""
        self.move(txn.payer, pending_out=-amount)
        self.move(txn.payee, pending_in=-amount)
        if amount == txn.held:
            txn.status = "SETTLED" if txn.captured else "REVERSED"
        txn.released += amount
        txn.events += 1

    @precondition(lambda self: bool(self.txns))
    @rule(data=st.data(), reason=st.sampled_from(["refund", "error"]))
    def reverse(self, data: st.DataObject, reason: str) -> None:
        reversible = [t.id for t in self.txns.values() if t.reversible and t.type != "reversal"]
        txn = self.draw_txn(data, reversible)
        amount = self.draw_amount(data, txn.reversible, rest=True)
        body = {"reason": reason} | ({} if amount is None else {"amount_minor": amount})
        if txn.type == "reversal" or txn.status != "SETTLED" or txn.reversible == 0:
            self.refused("InvalidStateTransition", "reverse", body, txn.id)
            return
        amount = txn.reversible if amount is None else amount
        if amount > txn.reversible:
            self.refused("ValidationFailed", "reverse", body, txn.id)
            return
        whole = amount == txn.captured and txn.reversed == 0
        moved = {account_id: net for account_id, net in txn.settled.items() if net}
        if not whole and (len(moved) != 2 or len({self.accounts[a].currency for a in moved}) != 1):
            self.refused("ValidationFailed", "reverse", body, txn.id)  # FX: only whole reversals
            return
        back = {a: -net if whole else (amount if net < 0 else -amount) for a, net in moved.items()}
        if any(self.accounts[a].user and self.accounts[a].available + d < 0 for a, d in back.items()):
            self.refused("InsufficientFunds", "reverse", body, txn.id)
            return
        sent, view = self.first("reverse", body, txn.id)
        assert view["type"] == "reversal" and view["reverses_txn_id"] == txn.id
        for account_id, delta in back.items():
            self.move(account_id, posted=delta)
        txn.reversed += amount
        txn.events += 1
        self.txns[sent.txn_id] = ModelTxn(
            sent.txn_id,
            "reversal",
            txn.currency,
            amount,
            txn.payee,
            txn.payer,
            captured=amount,
            reverses=txn.id,
            settled=back,
        )

    @precondition(lambda self: bool(self.open_holds()))
    @rule(data=st.data(), when=st.sampled_from(["far_past", "far_future", "now", "exact", "before", "after"]))
    def expire(self, data: st.DataObject, when: str) -> None:
        """The sweep releases exactly the open holds whose expiry is at or before `now` and has really passed (a
        sweep running with a clock ahead must not release a hold early: long holds stay open)."""
        open_holds = [t for t in self.txns.values() if t.status == "AUTHORIZED"]
        short = [t for t in open_holds if self.is_short(t)]
        now: str | None
        if when in {"exact", "before", "after"} and short:
            chosen = datetime.fromisoformat(data.draw(st.sampled_from([t.hold_expires_at or "" for t in short])))
            offset = {"exact": timedelta(0), "before": timedelta(microseconds=-1), "after": timedelta(seconds=1)}[when]
            now = stamp(chosen + offset)
        else:
            now = {"far_past": FAR_PAST, "now": None}.get(when, FAR_FUTURE)
        # The sweep re-checks the real clock: let the short holds it will look at really expire first.
        looked_at = [t.hold_expires_at or "" for t in short if (t.hold_expires_at or "") <= (now or FAR_FUTURE)]
        if looked_at:
            wait = datetime.fromisoformat(max(looked_at)) - datetime.now(UTC)
            time.sleep(max(wait.total_seconds(), 0) + 0.002)
        cutoff = now or stamp(datetime.now(UTC))
        due = sorted((t.hold_expires_at or "", t.id) for t in short if (t.hold_expires_at or "") <= cutoff)
        released = self.lifecycle.expire_due_holds(self.tenant_id, now=now)
        assert released == [txn_id for _, txn_id in due]
        OUTCOMES[f"expire: {len(due)} released, {len(open_holds) - len(due)} left open"] += 1
        for _, txn_id in due:
            self.release(self.txns[txn_id], self.txns[txn_id].held)
        self.touched.update(t.id for t in open_holds)

    @staticmethod
    def is_short(txn: ModelTxn) -> bool:
        """Created to expire during the run (long holds are at least a day away)."""
        return (datetime.fromisoformat(txn.hold_expires_at or FAR_FUTURE) - datetime.now(UTC)) < timedelta(hours=1)

    # ------------------------------------------------------------------ rules: FX
    @rule(data=st.data())
    def fx_convert(self, data: st.DataObject) -> None:
        """Convert between the two currency accounts of one user. The price comes from the sandbox provider (outside
        the kernel's arithmetic); the credited amount is worked out here: amount x rate, rounded down to the minor
        unit, refused when that is 0. Four legs: user -x, position(source ccy) +x, position(target ccy) -y, user +y."""
        from moncore.providers.fx import SandboxFx

        source = data.draw(st.sampled_from(self.user_accounts()), label="from")
        owner, source_ccy = self.accounts[source].owner, self.accounts[source].currency
        targets = [a.id for a in self.accounts.values() if a.owner == owner and a.currency != source_ccy]
        target = data.draw(st.sampled_from(targets), label="to")
        target_ccy = self.accounts[target].currency
        amount = self.draw_amount(data, self.accounts[source].available)
        body = {"account_id": source, "to_account_id": target, "amount_minor": amount, "currency": source_ccy}
        rate = SandboxFx().rate(source_ccy, target_ccy)
        scale = Fraction(10) ** (MINOR_DIGITS[target_ccy] - MINOR_DIGITS[source_ccy])
        credited = math.floor(amount * Fraction(rate) * scale)
        if credited == 0:
            self.refused("ValidationFailed", "fx", body)  # amount too small to convert
            return
        if amount > self.accounts[source].available:
            self.refused("InsufficientFunds", "fx", body)
            return
        sent, view = self.first("fx", body)
        source_position = f"sys_fx_position_{source_ccy.lower()}"
        target_position = f"sys_fx_position_{target_ccy.lower()}"
        moved = {source: -amount, source_position: amount, target_position: -credited, target: credited}
        assert sorted((leg["account_id"], leg["amount_minor"], leg["phase"]) for leg in view["legs"]) == sorted(
            (account_id, delta, "SETTLED") for account_id, delta in moved.items()
        )
        assert (view["fx"]["rate"], view["fx"]["target_amount_minor"]) == (rate, credited)
        for account_id, delta in moved.items():
            self.move(account_id, posted=delta)
        self.txns[sent.txn_id] = ModelTxn(
            sent.txn_id, "fx_conversion", source_ccy, amount, source, target, captured=amount, settled=moved
        )

    # ------------------------------------------------------------------ rules: replays
    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), same_body=st.booleans())
    def replay(self, data: st.DataObject, same_body: bool) -> None:
        """An earlier request again with its key: the same body answers the same transaction, flagged as a replay;
        another amount is refused (409 idempotency_key_reused). Neither posts anything."""
        # Kind first, then a request of that kind: fundings would otherwise crowd out the rarer steps (a manual
        # transfer replayed after its hold expired, a reversal replayed after the original was fully reversed).
        kinds = list(dict.fromkeys(s.kind + label(s.body) for s in self.sent))
        kind = data.draw(st.sampled_from(kinds), label="kind")
        sent = data.draw(st.sampled_from([s for s in self.sent if s.kind + label(s.body) == kind]), label="replayed")
        self.touched.update(t for t in (sent.txn_id, sent.target) if t)
        if same_body:
            result = self.send(sent.kind, sent.key, sent.body, sent.target)
            assert result.replayed is True
            assert result.body["id"] == sent.txn_id
            OUTCOMES[f"{sent.kind}{label(sent.body)}: replayed"] += 1
            return
        body = dict(sent.body)
        more = data.draw(st.integers(1, 50), label="more")
        body["amount_minor"] = (body.get("amount_minor") or self.txns[sent.txn_id].amount) + more
        self.refused("IdempotencyKeyReused", sent.kind, body, sent.target, key=sent.key)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def store_matches_model(self) -> None:
        """After every step: every balance item (one batch read), the API view of each account the step moved, the
        zero sums, the transactions the step touched, and one account's entries (in turn)."""
        self.steps += 1
        OUTCOMES["(checks)"] += 1
        balances = self.raw_balances()
        for account in self.accounts.values():
            self.check_balance(account, balances[account.id])
        moved = [a for a in self.accounts.values() if self.seen.get(a.id) != a.balance()]
        for account in moved:
            self.check_balance(account, self.stored_balance(account))
            self.seen[account.id] = account.balance()
        self.check_zero_sum(balances)
        self.check_transactions([self.txns[t] for t in self.touched if t in self.txns])
        self.touched.clear()
        everything = list(self.accounts)
        self.check_entries(everything[self.steps % len(everything)])

    def teardown(self) -> None:
        """At the end of a run: every transaction, every account's entries, and no leg on an account the model does
        not know (such a leg would escape the zero-sum check above)."""
        touched = self.check_transactions(list(self.txns.values()))
        assert set(touched) <= set(self.accounts), set(touched) - set(self.accounts)
        for account in self.accounts.values():
            self.check_balance(account, self.stored_balance(account))
            self.check_entries(account.id)

    @staticmethod
    def check_balance(account: ModelAccount, stored: dict[str, int]) -> None:
        assert stored == account.balance(), (account.id, stored, account.balance())
        assert stored["available_minor"] == stored["posted_minor"] - stored["pending_out_minor"]
        if account.user:
            assert stored["available_minor"] >= 0, account.id

    def raw_balances(self) -> dict[str, dict[str, int]]:
        """Every account's balance items (all shards) in one consistent BatchGetItem, summed here."""
        from moncore.store import accounts as account_store
        from moncore.store.balances import balance_key
        from moncore.store.models import BalanceItem

        # A system account exists from its first use; look up its shard count once the model says it holds money.
        unknown = [
            a.id for a in self.accounts.values() if not a.user and a.id not in self.system_refs and a.balance() != ZERO
        ]
        if unknown:
            self.system_refs.update(account_store.account_refs(self.tenant_id, unknown))
        keys = []
        for account in self.accounts.values():
            ref = self.system_refs.get(account.id)
            shards = 1 if account.user else (ref.shards if ref else 0)
            keys += [balance_key(self.tenant_id, account.id, shard) for shard in range(shards)]
        totals = {account_id: dict(ZERO) for account_id in self.accounts}
        for item in BalanceItem.batch_get(keys, consistent_read=True):
            total = totals[item.account_id]
            total["posted_minor"] += int(item.posted_minor)
            total["pending_in_minor"] += int(item.pending_in_minor)
            total["pending_out_minor"] += int(item.pending_out_minor)
            total["available_minor"] += int(item.available_minor)
            total["pending_minor"] += int(item.pending_in_minor) - int(item.pending_out_minor)
        return totals

    def stored_balance(self, account: ModelAccount) -> dict[str, int]:
        """User accounts as the API shows them; system accounts from their (possibly sharded) balance items."""
        from moncore.store import accounts as account_store
        from moncore.store import balances as balance_store

        if account.user:
            view = self.ledger.get_account(self.caller(), account.id)["balance"]
            return {k: view[k] for k in account.balance()}
        if account.id not in self.system_refs:  # refs never change once the account exists
            self.system_refs.update(account_store.account_refs(self.tenant_id, [account.id]))
        if account.id not in self.system_refs:  # a system account is created on first use; until then it holds nothing
            return dict(ZERO)
        balance, _ = balance_store.read_balance(self.tenant_id, self.system_refs[account.id])
        return {
            "posted_minor": balance.posted_minor,
            "pending_in_minor": balance.pending_in_minor,
            "pending_out_minor": balance.pending_out_minor,
            "available_minor": balance.available_minor,
            "pending_minor": balance.pending_in_minor - balance.pending_out_minor,
        }

    def check_transactions(self, txns: list[ModelTxn]) -> dict[str, str]:
        """Transaction views against the model; returns the accounts (and currencies) their legs touch."""
        touched: dict[str, str] = {}
        for txn in txns:
            view = self.ledger.get_transaction(self.caller(), txn.id)
            expected = {
                "type": txn.type,
                "status": txn.status,
                "amount_minor": txn.amount,
                "currency": txn.currency,
                "captured_minor": txn.captured,
                "held_minor": txn.held,
                "released_minor": txn.released,
                "reversed_minor": txn.reversed,
                "events": txn.events,
                "reverses_txn_id": txn.reverses,
            }
            actual = {k: view.get(k) for k in expected} | {"events": len(view["lifecycle"]) - 1}
            assert actual == expected, (txn.id, actual, expected)
            assert sum(r["amount_minor"] for r in view["reversals"]) == txn.reversed
            per_event: dict[tuple[int, str], int] = defaultdict(int)
            for leg in view["legs"]:
                per_event[(leg["seq"], leg["currency"])] += leg["amount_minor"]
                touched[leg["account_id"]] = leg["currency"]
            assert not {k: v for k, v in per_event.items() if v}, (txn.id, dict(per_event))
            assert {seq for seq, _ in per_event} <= set(range(1, txn.events + 1))
        return touched

    def check_zero_sum(self, balances: dict[str, dict[str, int]]) -> None:
        """Per currency over every account (system ones included): posted sums to zero and the incoming holds equal
        the outgoing ones (invariant 1, seen from the balances)."""
        posted: dict[str, int] = defaultdict(int)
        holds: dict[str, int] = defaultdict(int)
        for account_id, stored in balances.items():
            currency = self.accounts[account_id].currency
            posted[currency] += stored["posted_minor"]
            holds[currency] += stored["pending_in_minor"] - stored["pending_out_minor"]
        assert not {c: v for c, v in posted.items() if v}, dict(posted)
        assert not {c: v for c, v in holds.items() if v}, dict(holds)

    def check_entries(self, account_id: str) -> None:
        """Invariant 2: the balance is the sum of the account's ledger entries (phase effects written out here)."""
        from moncore.domain.transactions import Balance, Phase
        from moncore.store import ledger as ledger_store

        entries = list(ledger_store.account_entries(self.tenant_id, account_id))
        total = {"posted_minor": 0, "pending_in_minor": 0, "pending_out_minor": 0}
        for entry in entries:
            amount = entry.amount_minor
            if entry.phase == "SETTLED":
                total["posted_minor"] += amount
            elif entry.phase == "AUTHORIZED":
                total["pending_out_minor" if amount < 0 else "pending_in_minor"] += abs(amount)
            elif entry.phase == "RELEASED":
                total["pending_out_minor" if amount > 0 else "pending_in_minor"] -= abs(amount)
            else:
                raise AssertionError(entry.phase)
        total["available_minor"] = total["posted_minor"] - total["pending_out_minor"]
        total["pending_minor"] = total["pending_in_minor"] - total["pending_out_minor"]
        assert total == self.accounts[account_id].balance(), (account_id, total)
        derived = Balance.of_legs((Phase(e.phase), e.amount_minor) for e in entries)
        assert (derived.posted_minor, derived.pending_in_minor, derived.pending_out_minor) == (
            total["posted_minor"],
            total["pending_in_minor"],
            total["pending_out_minor"],
        )


def test_ledger_state_machine(local_backend: Any) -> None:
    OUTCOMES.clear()
    try:
        run_state_machine_as_test(LedgerMachine, settings=SETTINGS)
    finally:
        print("step outcomes:", dict(sorted(OUTCOMES.items())))
