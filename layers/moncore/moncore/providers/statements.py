"""Bank statement port: the bank that holds the tenant's client money (or the provider acting for it) delivers the
account statement of a day as the file the bank produces, plus the sandbox adapter (docs/reconciliation.md "Runs").

The port is one call, `fetch(StatementRequest) -> DeliveredStatement`: the statement's bytes as the bank sent them
(camt.053 here; the kernel parses whatever format arrives, camt.053/054 or MT940) and a file name. A failure to reach
the bank is ProviderUnavailable (retryable: the reconciliation state machine retries the ingest task). Which adapter
serves a provider is this module's registry (`statement_source`); a plugin module (providers/plugins.py) registers its
own with `register`. A provider without an adapter reconciles statements uploaded to the evidence bucket instead.

The sandbox adapter (`SandboxBankStatements`) plays a safeguarding bank that books exactly what the ledger says moved
through the provider's accounts on the day: one camt.053.001.02 statement (`Stmt`) per currency of the tenant's
provider accounts, one booked entry per leg (EndToEndId = the provider's reference, as the payer's bank passes it
on), opening with what the clients held at the end of the previous day and closing with the opening plus the day's
entries. Like the other sandboxes it misbehaves on demand, from a plan that is the simulated bank's own state
(`SandboxBankStatements.plan`): the next N calls fail as an outage would, and the statement drops lines, books other
amounts or adds lines the ledger never saw, so tests can drive every reconciliation outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape

from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import ProviderUnavailable, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.money import format_minor
from moncore.domain.snapshots import previous_day
from moncore.store import reconciliations as store
from moncore.store.models import ReconciliationItem

DEFAULT_CURRENCY = "EUR"  # the sandbox bank's account currency for a tenant that has no provider account yet


@dataclass(frozen=True, slots=True)
class StatementRequest:
    tenant_id: str
    provider: str
    day: str  # YYYY-MM-DD: the statement of this booking day
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class DeliveredStatement:
    data: bytes
    filename: str  # what the bank called it (kept in the evidence key)
    content_type: str = "application/xml"


class StatementSource(Protocol):
    name: str

    def fetch(self, request: StatementRequest) -> DeliveredStatement: ...


# ------------------------------------------------------------------------------------------------ sandbox
@dataclass(frozen=True, slots=True)
class ExtraLine:
    """A line the sandbox bank books that the ledger does not know: signed from the account (+ credit, - debit)."""

    reference: str
    amount_minor: int
    currency: str = "EUR"

    def record(self) -> dict[str, Any]:
        return {"reference": self.reference, "amount_minor": self.amount_minor, "currency": self.currency}


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    unavailable_calls: int = 0  # the next N statement calls for (tenant, day) fail with ProviderUnavailable
    drop: tuple[str, ...] = ()  # provider references the bank does not book
    amounts: Mapping[str, int] | None = None  # provider reference -> the amount (minor units, magnitude) booked
    extra: tuple[ExtraLine, ...] = ()

    def record(self) -> dict[str, Any]:
        return {
            "unavailable_calls": self.unavailable_calls,
            "drop": list(self.drop),
            "amounts": dict(self.amounts or {}),
            "extra": [line.record() for line in self.extra],
        }

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> SandboxPlan:
        return cls(
            int(document.get("unavailable_calls", 0)),
            tuple(document.get("drop", ())),
            {str(k): int(v) for k, v in dict(document.get("amounts") or {}).items()},
            tuple(ExtraLine(x["reference"], int(x["amount_minor"]), x["currency"]) for x in document.get("extra", ())),
        )


@dataclass(frozen=True, slots=True)
class _Line:
    reference: str | None
    amount_minor: int  # signed from the account
    currency: str
    servicer_ref: str  # the bank's own id of the entry


class SandboxBankStatements:
    """Simulated safeguarding bank (see the module docstring)."""

    name = "sandbox_bank"

    def fetch(self, request: StatementRequest) -> DeliveredStatement:
        planned = store.latest(self._pk(request.tenant_id, request.day), "PLAN#")
        plan = SandboxPlan() if planned is None else SandboxPlan.of(planned.document)
        plan_version = 0 if planned is None else int(planned.version)
        if plan.unavailable_calls and self._take_fault(request, plan_version, plan.unavailable_calls):
            raise ProviderUnavailable("the sandbox bank's statement service is unavailable; retry")
        return DeliveredStatement(
            self.build(request.tenant_id, request.provider, request.day, plan), f"camt053-{request.day}.xml"
        )

    # ---- the plan (the simulated bank's own state)
    @staticmethod
    def _pk(tenant_id: str, day: str) -> str:
        return f"_sandbox#statements#{tenant_id}#{day}"

    @classmethod
    def plan(cls, tenant_id: str, day: str, plan: SandboxPlan) -> None:
        """From now on, the statements of (tenant, day) follow `plan` (the latest plan wins; calls count afresh)."""
        pk = cls._pk(tenant_id, day)
        for _ in range(5):
            latest = store.latest(pk, "PLAN#")
            version = 1 if latest is None else int(latest.version) + 1
            try:
                store.append(_sandbox_item(pk, "PLAN#", version, tenant_id, plan.record()))
                return
            except store.VersionTaken:
                continue
        raise ProviderUnavailable("the sandbox bank's plan is changing concurrently; retry")

    def _take_fault(self, request: StatementRequest, plan_version: int, faults: int) -> bool:
        """Count this call (the next CALL# version under the plan's) and say whether it is one of the planned faults:
        each plan counts its own calls, so a new plan starts its outage afresh."""
        pk = self._pk(request.tenant_id, request.day)
        call_prefix = f"CALL#{plan_version:04d}#"
        for _ in range(5):
            latest = store.latest(pk, call_prefix)
            number = 1 if latest is None else int(latest.version) + 1
            try:
                document = {"call": number, "correlation_id": request.correlation_id}
                store.append(_sandbox_item(pk, call_prefix, number, request.tenant_id, document))
            except store.VersionTaken:
                continue
            return number <= faults
        return True

    # ---- the statement
    def build(self, tenant_id: str, provider: str, day: str, plan: SandboxPlan) -> bytes:
        """The camt.053.001.02 statement of (tenant, provider, day) under `plan`."""
        from moncore.reconciliation import ledger_side  # noqa: PLC0415 - the kernel's view of the books, sandbox only

        amounts = dict(plan.amounts or {})
        dropped = set(plan.drop)
        # One statement per currency of the tenant's provider accounts; a tenant without any still has its account
        # at the bank (in EUR here), with nothing on it.
        currencies = ledger_side.currencies(tenant_id) or [DEFAULT_CURRENCY]
        by_currency: dict[str, list[_Line]] = {currency: [] for currency in currencies}
        for entry, item in ledger_side.day_legs(tenant_id, provider, day):
            reference = entry.provider_ref
            if reference is not None and reference in dropped:
                continue
            amount = item.amount_minor
            if reference is not None and reference in amounts:
                amount = amounts[reference] if amount >= 0 else -amounts[reference]
            servicer = derived_id("SBXB", entry.txn_id, str(entry.seq), str(entry.leg_no))
            by_currency.setdefault(item.currency, []).append(_Line(reference, amount, item.currency, servicer))
        for extra in plan.extra:
            servicer = derived_id("SBXB", tenant_id, day, extra.reference)
            line = _Line(extra.reference, extra.amount_minor, extra.currency, servicer)
            by_currency.setdefault(extra.currency, []).append(line)
        statements = [
            _statement_xml(
                tenant_id,
                day,
                currency,
                ledger_side.client_balances_minor(tenant_id, currency, previous_day(day)),
                lines,
            )
            for currency, lines in sorted(by_currency.items())
        ]
        return _document_xml(tenant_id, day, statements)


def _sandbox_item(pk: str, prefix: str, version: int, tenant_id: str, document: dict[str, Any]) -> ReconciliationItem:
    kind = "sandbox_plan" if prefix.startswith("PLAN") else "sandbox_call"
    return ReconciliationItem(
        pk,
        store.versioned_sk(prefix, version),
        tenant_id=tenant_id,
        kind=kind,
        version=version,
        document=document,
        recorded_at=now_rfc3339(),
        actor="sandbox_bank",
    )


# ------------------------------------------------------------------------------------------------ camt.053 writer
_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def _document_xml(tenant_id: str, day: str, statements: Iterable[str]) -> bytes:
    created = now_rfc3339()[:19]
    header = (
        f"<GrpHdr><MsgId>{escape(derived_id('SBXM', tenant_id, day, created))}</MsgId>"
        f"<CreDtTm>{created}</CreDtTm></GrpHdr>"
    )
    body = "".join(statements)
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{_NS}"><BkToCstmrStmt>{header}{body}</BkToCstmrStmt></Document>\n'
    )
    return text.encode("utf-8")


def _statement_xml(tenant_id: str, day: str, currency: str, opening_minor: int, lines: list[_Line]) -> str:
    closing = opening_minor + sum(line.amount_minor for line in lines)
    account = f"sandbox-safeguarding-{tenant_id}-{currency.lower()}"
    return (
        f"<Stmt><Id>SBX-{escape(day)}-{currency}</Id><CreDtTm>{now_rfc3339()[:19]}</CreDtTm>"
        f"<Acct><Id><Othr><Id>{escape(account)}</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>"
        f"{_balance_xml('OPBD', opening_minor, currency, previous_day(day))}"
        f"{_balance_xml('CLBD', closing, currency, day)}" + "".join(_entry_xml(line, day) for line in lines) + "</Stmt>"
    )


def _balance_xml(kind: str, amount_minor: int, currency: str, day: str) -> str:
    direction = "DBIT" if amount_minor < 0 else "CRDT"
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{kind}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="{currency}">{format_minor(abs(amount_minor), currency)}</Amt>'
        f"<CdtDbtInd>{direction}</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
    )


def _entry_xml(line: _Line, day: str) -> str:
    credit = line.amount_minor >= 0
    party = "<RltdPties><Dbtr><Nm>Sandbox payer</Nm></Dbtr></RltdPties>" if credit else ""
    if not credit:
        party = "<RltdPties><Cdtr><Nm>Sandbox beneficiary</Nm></Cdtr></RltdPties>"
    family = "RCDT" if credit else "ICDT"
    return (
        f'<Ntry><Amt Ccy="{line.currency}">{format_minor(abs(line.amount_minor), line.currency)}</Amt>'
        f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts>BOOK</Sts>"
        f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
        f"<AcctSvcrRef>{escape(line.servicer_ref)}</AcctSvcrRef>"
        f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{family}</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{escape(line.reference or 'NOTPROVIDED')}</EndToEndId></Refs>"
        f"{party}</TxDtls></NtryDtls></Ntry>"
    )


# ------------------------------------------------------------------------------------------------ adapters
SANDBOX_BANK = SandboxBankStatements()
# The sandbox open banking providers pay into a sandbox safeguarding bank, whose statements this adapter delivers.
_SOURCES: dict[str, StatementSource] = {
    "sandbox_open_banking": SANDBOX_BANK,
    "sandbox_open_banking_instant": SANDBOX_BANK,
}
_LOCK = threading.Lock()


def register(provider: str, source: StatementSource) -> None:
    """The statements of `provider`'s accounts are fetched from `source` (plugin modules call this)."""
    with _LOCK:
        _SOURCES[provider] = source


def statement_source(provider: str) -> StatementSource:
    """The adapter delivering `provider`'s statements; ValidationFailed when there is none (upload the file)."""
    source = _SOURCES.get(provider)
    if source is None:
        from moncore.providers import plugins  # noqa: PLC0415 - loaded on the first unknown name only

        plugins.load()
        source = _SOURCES.get(provider)
    if source is None:
        raise ValidationFailed(
            f"no bank statement adapter for provider '{provider}': upload the statement under statements/ in the "
            "evidence bucket and pass statement_s3_key",
            errors=[{"loc": ["body", "statement_s3_key"], "msg": f"required for provider {provider!r}"}],
        )
    return source
