"""Bank statement parsers: ISO 20022 camt.053 / camt.054 (versions .001.02 to .001.13) and SWIFT MT940, streamed into
the normalised records of `moncore.domain.statements` (docs/reconciliation.md, decision 46).

`parse_statement(source)` sniffs the format (XML or MT940 tags) and yields `StatementEntry` and `StatementBalance`
records in file order. It is a generator with bounded memory: camt is read with lxml `iterparse` and every `Ntry`/`Bal`
is cleared as soon as it is turned into a record; MT940 is read line by line and holds one field at a time. A
malformed file raises `StatementMalformed` naming the place (file, line, element or tag) as soon as the parser reaches
it; records yielded before that must be discarded by the caller (the CLI validates the whole file before printing).

XML safety: ISO 20022 messages never carry a DTD, so any DOCTYPE is refused outright (no entity of any kind is ever
expanded: billion laughs and XXE both fail closed); lxml additionally runs with entity resolution, DTD loading and
network access off and its default size limits (`huge_tree=False`).

Reference precedence (what matching uses as `reference`): camt: EndToEndId (unless NOTPROVIDED), structured creditor
reference (RmtInf/Strd/CdtrRefInf/Ref), TxId, InstrId, PmtInfId, the entry's or transaction's AcctSvcrRef, a
proprietary reference; MT940: the :86: EREF, the :61: customer reference (unless NONREF), the :61: bank reference.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from lxml import etree

from moncore.domain.errors import StatementMalformed
from moncore.domain.statements import (
    Direction,
    StatementBalance,
    StatementEntry,
    StatementRecord,
    amount_minor_from_text,
    check_currency,
    iso_date,
)

SNIFF_BYTES = 4096
CAMT_VERSIONS = range(2, 14)  # .001.02 .. .001.13: the Stmt/Ntfctn, Bal and Ntry structure this parser reads
_CAMT_NS_RE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(camt\.05[2-9])\.001\.(\d{2})$")
_MESSAGES = {"camt.053": ("BkToCstmrStmt", "Stmt"), "camt.054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}
_NOT_PROVIDED = frozenset({"NOTPROVIDED", "NONREF", "NOT PROVIDED"})


def parse_statement(source: str | Path | IO[bytes], *, name: str | None = None) -> Iterator[StatementRecord]:
    """Entries and balances of a camt.053, camt.054 or MT940 file (a path or a binary stream), in file order."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as handle:
            yield from _parse_stream(handle, name or path.name)
    else:
        yield from _parse_stream(source, name or "statement")


def entries(source: str | Path | IO[bytes], *, name: str | None = None) -> Iterator[StatementEntry]:
    """Only the entries of `parse_statement`."""
    for record in parse_statement(source, name=name):
        if isinstance(record, StatementEntry):
            yield record


def detect_format(head: bytes) -> str:
    """ "xml" when the file starts with a UTF-16 byte order mark or its first non-blank character (after a UTF-8 one)
    is '<', else "mt940" (whose parser then names the first line that is not an MT940 field)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "xml"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        return "empty"
    return "xml" if text.startswith(b"<") else "mt940"


def _parse_stream(stream: IO[bytes], label: str) -> Iterator[StatementRecord]:
    head = stream.read(SNIFF_BYTES)
    whole = io.BufferedReader(_Prepended(head, stream), buffer_size=1 << 16)
    kind = detect_format(head)
    if kind == "empty":
        raise StatementMalformed(f"{label}: the file is empty")
    if kind == "xml":
        yield from _parse_camt(whole, label)
    else:
        yield from _parse_mt940(whole, label)


class _Prepended(io.RawIOBase):
    """A read-only stream: the sniffed head, then the rest of the underlying stream (which need not be seekable)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        chunk = self._rest.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)


# ---------------------------------------------------------------------------------------------------------- camt


class _Paths:
    """Clark-notation paths for one message namespace (lxml `find` is fastest with them)."""

    def __init__(self, ns: str) -> None:
        def q(path: str) -> str:
            return "/".join(f"{{{ns}}}{part}" for part in path.split("/"))

        self.q = q
        self.id, self.acct = q("Id"), q("Acct")
        self.acct_iban, self.acct_other = q("Id/IBAN"), q("Id/Othr/Id")
        self.amt, self.cdt_dbt, self.rvsl, self.sts = q("Amt"), q("CdtDbtInd"), q("RvslInd"), q("Sts")
        self.cd, self.prtry = q("Cd"), q("Prtry")
        self.bookg = (q("BookgDt/Dt"), q("BookgDt/DtTm"))
        self.val = (q("ValDt/Dt"), q("ValDt/DtTm"))
        self.dt = (q("Dt/Dt"), q("Dt/DtTm"))
        self.bal_type = (q("Tp/CdOrPrtry/Cd"), q("Tp/CdOrPrtry/Prtry"))
        self.svcr = q("AcctSvcrRef")
        self.domain = (q("BkTxCd/Domn/Cd"), q("BkTxCd/Domn/Fmly/Cd"), q("BkTxCd/Domn/Fmly/SubFmlyCd"))
        self.bk_prtry = q("BkTxCd/Prtry/Cd")
        self.tx = q("NtryDtls/TxDtls")
        self.batch_ids = (q("NtryDtls/Btch/PmtInfId"), q("NtryDtls/Btch/MsgId"))
        self.tx_amt = (q("Amt"), q("AmtDtls/TxAmt/Amt"))
        self.refs = tuple(
            q(f"Refs/{name}") for name in ("EndToEndId", "TxId", "InstrId", "PmtInfId", "AcctSvcrRef", "Prtry/Ref")
        )
        self.scor = q("RmtInf/Strd/CdtrRefInf/Ref")
        self.ustrd = q("RmtInf/Ustrd")
        self.addtl_ntry, self.addtl_tx = q("AddtlNtryInf"), q("AddtlTxInf")
        # Up to .001.07 a party is PartyIdentification (Nm directly); from .001.08 a Party40Choice (Pty/Nm or Agt).
        self.party = {
            role: (q(f"RltdPties/{role}/Nm"), q(f"RltdPties/{role}/Pty/Nm"))
            for role in ("Dbtr", "Cdtr", "UltmtDbtr", "UltmtCdtr")
        }
        self.party_acct = {
            role: (q(f"RltdPties/{role}Acct/Id/IBAN"), q(f"RltdPties/{role}Acct/Id/Othr/Id"))
            for role in ("Dbtr", "Cdtr")
        }


@dataclass
class _Statement:
    statement_id: str
    account: str | None
    index: int
    entries: int = 0
    balances: int = 0


def _text(elem: Any, *paths: str) -> str | None:
    for path in paths:
        value = elem.findtext(path)
        if value is not None and value.strip():
            return str(value.strip())
    return None


def _parse_camt(stream: IO[bytes], label: str) -> Iterator[StatementRecord]:
    parser = etree.iterparse(
        stream,
        events=("start", "end"),
        tag=("{*}Document", "{*}Stmt", "{*}Ntfctn", "{*}Rpt", "{*}Bal", "{*}Ntry"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    paths: _Paths | None = None
    source = ""
    statement_tag = ""
    statement: _Statement | None = None
    statements = 0
    try:
        for event, elem in parser:
            if paths is None:
                paths, source, statement_tag = _check_root(elem, label)
                continue
            tag = elem.tag
            if event == "start":
                if tag == statement_tag:
                    statements += 1
                    statement = None
                continue
            parent = elem.getparent()
            if tag == statement_tag:
                elem.clear(keep_tail=False)
                _drop_previous(elem)
                continue
            if parent is None or parent.tag != statement_tag:
                continue  # a same-named element elsewhere (none in these messages today): not a statement line
            if statement is None:
                statement = _statement_info(parent, paths, statements, label, statement_tag)
            if tag.endswith("}Ntry"):
                statement.entries += 1
                yield from _camt_entries(elem, paths, statement, source, label, statement_tag)
            elif tag.endswith("}Bal"):
                statement.balances += 1
                yield _camt_balance(elem, paths, statement, source, label, statement_tag)
            elem.clear(keep_tail=False)
            _drop_previous(elem)
    except etree.XMLSyntaxError as exc:
        raise StatementMalformed(f"{label}: line {exc.lineno}: not well-formed XML ({exc.msg})") from None
    if paths is None:
        raise StatementMalformed(f"{label}: no ISO 20022 <Document> element")
    if statements == 0:
        local = statement_tag.rsplit("}", 1)[1]
        raise StatementMalformed(f"{label}: the {source} message has no <{local}>")


def _drop_previous(elem: Any) -> None:
    """Free the siblings already processed (the statement's own Id and Acct were read before its first line)."""
    parent = elem.getparent()
    if parent is None:
        return
    while elem.getprevious() is not None:
        del parent[0]


def _check_root(elem: Any, label: str) -> tuple[_Paths, str, str]:
    where = f"{label}: line {elem.sourceline}"
    if elem.getroottree().docinfo.internalDTD is not None or elem.getroottree().docinfo.doctype:
        raise StatementMalformed(f"{label}: a DOCTYPE is not allowed in an ISO 20022 message (entities refused)")
    # The first <Document> is the message, at the root or inside a transport envelope (a business application header
    # envelope puts it next to an AppHdr); the tag filter of the parser reports nothing before it.
    qname = etree.QName(elem)
    if qname.localname != "Document":
        raise StatementMalformed(f"{where}: <{qname.localname}> outside an ISO 20022 <Document>")
    if qname.namespace is None:
        raise StatementMalformed(f"{where}: <Document> has no namespace (expected urn:iso:std:iso:20022:tech:xsd:...)")
    found = _CAMT_NS_RE.match(qname.namespace)
    if found is None:
        raise StatementMalformed(f"{where}: namespace {qname.namespace!r} is not a camt.053 or camt.054 message")
    message, version = found.group(1), int(found.group(2))
    if message not in _MESSAGES:
        raise StatementMalformed(f"{where}: {message} is not supported (camt.053 statements, camt.054 notifications)")
    if version not in CAMT_VERSIONS:
        raise StatementMalformed(
            f"{where}: {message}.001.{version:02d} is not supported (versions .001.02 to .001.13 are)"
        )
    namespace = qname.namespace or ""
    return _Paths(namespace), f"{message}.001.{version:02d}", f"{{{namespace}}}{_MESSAGES[message][1]}"


def _statement_info(stmt: Any, paths: _Paths, index: int, label: str, statement_tag: str) -> _Statement:
    wrapper = stmt.getparent()
    local = statement_tag.rsplit("}", 1)[1]
    where = f"{label}: line {stmt.sourceline} {local}[{index}]"
    expected_wrapper = next(w for w, s in _MESSAGES.values() if s == local)
    if wrapper is None or etree.QName(wrapper).localname != expected_wrapper:
        raise StatementMalformed(f"{where}: <{local}> is not inside <{expected_wrapper}>")
    statement_id = _text(stmt, paths.id)
    if statement_id is None:
        raise StatementMalformed(f"{where}: the {local} has no Id")
    acct = stmt.find(paths.acct)
    if acct is None:
        raise StatementMalformed(f"{where}: the {local} has no Acct")
    return _Statement(statement_id, _text(acct, paths.acct_iban, paths.acct_other), index)


def _amount(elem: Any, path: str, where: str) -> tuple[int, str]:
    amt = elem.find(path)
    if amt is None:
        raise StatementMalformed(f"{where}: missing Amt")
    place = f"{where} Amt (line {amt.sourceline})"
    currency = check_currency(amt.get("Ccy"), place=place)
    return amount_minor_from_text(amt.text, currency, place=place), currency


def _direction(elem: Any, paths: _Paths, where: str) -> Direction:
    value = _text(elem, paths.cdt_dbt)
    if value == "CRDT":
        return "CRDT"
    if value == "DBIT":
        return "DBIT"
    raise StatementMalformed(f"{where}: CdtDbtInd is {value!r}, expected CRDT or DBIT")


def _camt_balance(
    elem: Any, paths: _Paths, statement: _Statement, source: str, label: str, statement_tag: str
) -> StatementBalance:
    local = statement_tag.rsplit("}", 1)[1]
    where = f"{label}: line {elem.sourceline} {local}[{statement.index}] Bal[{statement.balances}]"
    kind = _text(elem, *paths.bal_type)
    if kind is None:
        raise StatementMalformed(f"{where}: balance has no type (Tp/CdOrPrtry)")
    amount_minor, currency = _amount(elem, paths.amt, where)
    direction = _direction(elem, paths, where)
    day = iso_date(_text(elem, *paths.dt), place=f"{where} Dt", required=True)
    return StatementBalance(
        statement_id=statement.statement_id,
        account=statement.account,
        type=kind,
        date=day,
        amount_minor=amount_minor if direction == "CRDT" else -amount_minor,
        currency=currency,
        source=source,
        place=where.removeprefix(f"{label}: "),
    )


def _camt_entries(
    elem: Any, paths: _Paths, statement: _Statement, source: str, label: str, statement_tag: str
) -> Iterator[StatementEntry]:
    local = statement_tag.rsplit("}", 1)[1]
    where = f"{label}: line {elem.sourceline} {local}[{statement.index}] Ntry[{statement.entries}]"
    amount_minor, currency = _amount(elem, paths.amt, where)
    direction = _direction(elem, paths, where)
    status_elem = elem.find(paths.sts)
    status = None
    if status_elem is not None:  # a code up to .001.07, a Cd/Prtry choice from .001.08
        status = _text(status_elem, paths.cd, paths.prtry) or (status_elem.text or "").strip() or None
    if status is None:
        raise StatementMalformed(f"{where}: entry has no status (Sts)")
    code = _text(elem, paths.bk_prtry)
    domain = [part for part in (_text(elem, path) for path in paths.domain) if part]
    base: dict[str, Any] = {
        "statement_id": statement.statement_id,
        "account": statement.account,
        "booking_date": iso_date(_text(elem, *paths.bookg), place=f"{where} BookgDt"),
        "value_date": iso_date(_text(elem, *paths.val), place=f"{where} ValDt"),
        "status": status,
        "reversal": _boolean(_text(elem, paths.rvsl), f"{where} RvslInd"),
        "bank_transaction_code": "/".join(domain) if domain else code,
        "source": source,
    }
    entry_svcr = _text(elem, paths.svcr)
    entry_info = _text(elem, paths.addtl_ntry)
    transactions = list(elem.iterfind(paths.tx))
    split = _split_amounts(transactions, paths, currency, amount_minor, direction, where)
    place = where.removeprefix(f"{label}: ")
    if split is None:
        if len(transactions) == 1:
            details = _details(transactions[0], paths, direction, statement.account)
        else:  # no details, or a batch booked as one line: its batch id is the best reference it has
            details = {"reference": _text(elem, *paths.batch_ids) if transactions else None}
        split_place: list[tuple[dict[str, Any], int, Direction, str]] = [(details, amount_minor, direction, place)]
    else:
        split_place = [
            (_details(tx, paths, tx_direction, statement.account), tx_amount, tx_direction, f"{place} TxDtls[{index}]")
            for index, (tx, tx_amount, tx_direction) in enumerate(split, start=1)
        ]
    entry_ref = f"{statement.statement_id}#{statement.entries}"
    for part, (details, part_minor, part_direction, part_place) in enumerate(split_place, start=1):
        svcr = details.get("account_servicer_ref") or entry_svcr
        yield StatementEntry(
            **base,
            amount_minor=part_minor,
            currency=currency,
            direction=part_direction,
            reference=details.get("reference") or svcr,
            counterparty=details.get("counterparty"),
            counterparty_account=details.get("counterparty_account"),
            end_to_end_id=details.get("end_to_end_id"),
            account_servicer_ref=svcr,
            remittance=details.get("remittance") or entry_info,
            place=part_place,
            entry_ref=entry_ref if split is None else f"{entry_ref}.{part}",
        )


def _boolean(text: str | None, where: str) -> bool:
    """An xs:boolean ("true", "false", "1", "0"); absent is false."""
    if text is None:
        return False
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise StatementMalformed(f"{where}: {text!r} is not a boolean")


def _split_amounts(
    transactions: list[Any], paths: _Paths, currency: str, amount_minor: int, direction: Direction, where: str
) -> list[tuple[Any, int, Direction]] | None:
    """A batch entry (several TxDtls) is split into one entry per transaction when every transaction states its
    amount in the entry's currency and they add up to the entry exactly; else the entry stays one line."""
    if len(transactions) < 2:
        return None
    parts: list[tuple[Any, int, Direction]] = []
    total = 0
    for index, tx in enumerate(transactions, start=1):
        path = next((p for p in paths.tx_amt if tx.find(p) is not None), None)
        if path is None:
            return None
        tx_amount, tx_currency = _amount(tx, path, f"{where} TxDtls[{index}]")
        if tx_currency != currency:
            return None
        tx_direction = direction
        stated = _text(tx, paths.cdt_dbt)
        if stated in ("CRDT", "DBIT"):
            tx_direction = "CRDT" if stated == "CRDT" else "DBIT"
        total += tx_amount if tx_direction == direction else -tx_amount
        parts.append((tx, tx_amount, tx_direction))
    return parts if total == amount_minor else None


def _details(tx: Any, paths: _Paths, direction: Direction, own_account: str | None) -> dict[str, Any]:
    end_to_end, tx_id, instr_id, pmt_inf_id, svcr, proprietary = (_text(tx, path) for path in paths.refs)
    if end_to_end is not None and end_to_end.upper() in _NOT_PROVIDED:
        end_to_end = None
    scor = _text(tx, paths.scor)
    remittance = " ".join(text.strip() for elem in tx.iterfind(paths.ustrd) if (text := elem.text)) or None
    counterparty, counterparty_account = _counterparty(tx, paths, direction, own_account)
    return {
        "reference": end_to_end or scor or tx_id or instr_id or pmt_inf_id or svcr or proprietary,
        "end_to_end_id": end_to_end,
        "account_servicer_ref": svcr,
        "counterparty": counterparty,
        "counterparty_account": counterparty_account,
        "remittance": remittance or _text(tx, paths.addtl_tx),
    }


def _counterparty(
    tx: Any, paths: _Paths, direction: Direction, own_account: str | None
) -> tuple[str | None, str | None]:
    """Name and account of the other party: the debtor of a credit, the creditor of a debit (or their ultimate
    party). Some banks fill only the party on the wrong side; it is taken when its account is stated and is not the
    statement's own account (a party whose account is ours is the account owner, never the counterparty)."""
    other, own = ("Dbtr", "Cdtr") if direction == "CRDT" else ("Cdtr", "Dbtr")
    name = _text(tx, *paths.party[other]) or _text(tx, *paths.party[f"Ultmt{other}"])
    account = _text(tx, *paths.party_acct[other])
    if name is None and account is None:
        wrong_side = _text(tx, *paths.party_acct[own])
        if wrong_side is not None and wrong_side != own_account:
            return _text(tx, *paths.party[own]), wrong_side
    return name, account


# ---------------------------------------------------------------------------------------------------------- MT940

_TAG_RE = re.compile(r"^:(\d{2}[A-Z]?):")
_BALANCE_RE = re.compile(r"^(?P<mark>[CD])(?P<date>\d{6})(?P<ccy>[A-Z]{3})(?P<amount>\d[\d,]{0,14})$")
_LINE61_RE = re.compile(
    r"^(?P<value>\d{6})(?P<entry>\d{4})?(?P<mark>RC|RD|C|D)(?P<funds>[A-Z])?(?P<amount>\d[\d,]{0,14})"
    r"(?P<type>[NFS][A-Z0-9]{3})(?P<cref>(?:(?!//).){1,16})(?://(?P<bref>.{1,16}))?$"
)
_BALANCE_TYPES = {"60F": "OPBD", "60M": "ITBD", "62F": "CLBD", "62M": "ITBD", "64": "CLAV", "65": "FWAV"}
# Which tags may follow which (SWIFT MT940 field order); "end" = the message may end here.
_NEXT: dict[str, frozenset[str]] = {
    "start": frozenset({"20"}),
    "20": frozenset({"21", "25", "25P"}),
    "21": frozenset({"25", "25P"}),
    "25": frozenset({"28C", "28"}),
    "25P": frozenset({"28C", "28"}),
    "28C": frozenset({"60F", "60M"}),
    "28": frozenset({"60F", "60M"}),
    "60F": frozenset({"61", "62F", "62M"}),
    "60M": frozenset({"61", "62F", "62M"}),
    "61": frozenset({"61", "86", "62F", "62M"}),
    "86@61": frozenset({"61", "62F", "62M"}),
    "62F": frozenset({"64", "65", "86", "end"}),
    "62M": frozenset({"64", "65", "86", "end"}),
    "64": frozenset({"65", "86", "end"}),
    "65": frozenset({"65", "86", "end"}),
    "86": frozenset({"end"}),
}
_KNOWN_TAGS = frozenset(tag for tags in _NEXT.values() for tag in tags) - {"end"}
_GVC_RE = re.compile(r"\?(\d{2})")
_SLASH_CODES = ("EREF", "NAME", "REMI", "IBAN", "CNTP", "ORDP", "BENM", "MARF", "CSID", "PREF", "TRTP", "BUSP")
_SLASH_RE = re.compile(r"/(%s)/" % "|".join(_SLASH_CODES))  # noqa: UP031


@dataclass
class _Field:
    tag: str
    line: int
    text: list[str] = field(default_factory=list)


@dataclass
class _Message:
    index: int
    first_line: int
    state: str = "start"
    reference: str = ""
    account: str | None = None
    number: str = ""
    currency: str = ""
    opening_minor: int | None = None
    running_minor: int = 0
    entries: int = 0
    pending: StatementEntry | None = None  # a :61: waiting for its :86:
    closed: bool = False


def _decode(raw: bytes) -> str:
    """MT940 is SWIFT's X character set (ASCII); banks that send more use UTF-8 or Latin-1 (German umlauts)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_mt940(stream: IO[bytes], label: str) -> Iterator[StatementRecord]:
    message: _Message | None = None
    current: _Field | None = None
    messages = 0
    line_no = 0
    for raw in stream:
        line_no += 1
        line = _decode(raw).rstrip("\r\n")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):  # SWIFT envelope: {1:..}{2:..}{4: opens the text block, -} closes it
            if "{4:" in stripped:
                if message is not None:
                    yield from _finish(message, current, label, line_no)
                    message, current = None, None
                rest = stripped.split("{4:", 1)[1].strip()
                if not rest:
                    continue
                line = stripped = rest
            else:
                continue
        if stripped in ("-", "$") or stripped.startswith("-}"):  # end of a message; "$" separates them in RJE files
            if message is not None:
                yield from _finish(message, current, label, line_no)
            message, current = None, None
            continue
        tag_match = _TAG_RE.match(stripped)
        if tag_match is None:
            if current is None:
                raise StatementMalformed(f"{label}: line {line_no}: {stripped[:40]!r} is not an MT940 field (:NN:)")
            current.text.append(line)
            continue
        tag = tag_match.group(1)
        if tag not in _KNOWN_TAGS:
            raise StatementMalformed(f"{label}: line {line_no}: unknown MT940 tag :{tag}:")
        if current is not None and message is not None:
            yield from _field(message, current, label)
        if tag == "20" and message is not None and message.state != "start":
            yield from _finish(message, None, label, line_no)  # messages written back to back without a separator
            message = None
        if message is None:
            messages += 1
            message = _Message(index=messages, first_line=line_no)
        current = _Field(tag, line_no, [stripped[tag_match.end() :]])
    if message is not None:
        yield from _finish(message, current, label, line_no)
    if messages == 0:
        raise StatementMalformed(f"{label}: no MT940 message (no :20: field) found")


def _finish(message: _Message, current: _Field | None, label: str, line_no: int) -> Iterator[StatementRecord]:
    if current is not None:
        yield from _field(message, current, label)
    if message.pending is not None:
        yield message.pending
        message.pending = None
    if "end" not in _NEXT[message.state]:
        raise StatementMalformed(
            f"{label}: line {line_no}: MT940 message {message.index} (from line {message.first_line}) ends after "
            f":{message.state.split('@')[0]}: without its closing balance (:62F: or :62M:)"
        )


def _field(message: _Message, current: _Field, label: str) -> Iterator[StatementRecord]:
    tag, where = current.tag, f"{label}: line {current.line} :{current.tag}:"
    allowed = _NEXT[message.state]
    if tag not in allowed:
        expected = ", ".join(f":{t}:" for t in sorted(allowed - {"end"})) or "the end of the message"
        raise StatementMalformed(
            f"{where}: not allowed here (after :{message.state.split('@')[0]}:, expected {expected})"
        )
    first = current.text[0].strip()
    rest = [line.strip() for line in current.text[1:]]
    if message.pending is not None and tag != "86":
        yield message.pending
        message.pending = None
    message.state = "86@61" if tag == "86" and message.state == "61" else tag
    if tag == "20":
        message.reference = _required(first, where)
    elif tag in ("25", "25P"):
        message.account = _required(first, where)
    elif tag in ("28C", "28"):
        message.number = _required(first, where)
    elif tag in _BALANCE_TYPES:
        yield from _mt_balance(message, tag, first, where, label)
    elif tag == "61":
        message.entries += 1
        message.pending = _mt_entry(message, first, rest, where, label)
    elif tag == "86" and message.pending is not None:
        message.pending = _with_information(message.pending, "".join([first, *rest]).strip())


def _required(text: str, where: str) -> str:
    if not text:
        raise StatementMalformed(f"{where}: empty field")
    return text


def _mt_amount(text: str, currency: str, where: str) -> int:
    if text.count(",") != 1:
        raise StatementMalformed(f"{where}: amount {text!r} must have exactly one decimal comma")
    return amount_minor_from_text(text.replace(",", "."), currency, place=where)


def _mt_date(text: str, where: str) -> date:
    year = int(text[:2])
    try:
        return date(2000 + year if year < 80 else 1900 + year, int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise StatementMalformed(f"{where}: {text!r} is not a date (YYMMDD)") from None


def _mt_balance(message: _Message, tag: str, text: str, where: str, label: str) -> Iterator[StatementBalance]:
    found = _BALANCE_RE.match(text)
    if found is None:
        raise StatementMalformed(f"{where}: {text!r} is not a balance (C|D, YYMMDD, currency, amount)")
    currency = check_currency(found.group("ccy"), place=where)
    if tag.startswith("60"):
        message.currency = currency
    elif currency != message.currency:
        raise StatementMalformed(f"{where}: balance in {currency}, the statement is in {message.currency}")
    amount_minor = _mt_amount(found.group("amount"), currency, where)
    signed = amount_minor if found.group("mark") == "C" else -amount_minor
    if tag.startswith("60"):
        message.opening_minor = signed
        message.running_minor = signed
    elif tag.startswith("62") and signed != message.running_minor:
        raise StatementMalformed(
            f"{where}: closing balance {signed} does not equal the opening balance plus the entries "
            f"({message.running_minor}, in minor units)"
        )
    yield StatementBalance(
        statement_id=_mt_statement_id(message),
        account=message.account,
        type=_BALANCE_TYPES[tag],
        date=_mt_date(found.group("date"), where).isoformat(),
        amount_minor=signed,
        currency=currency,
        source="MT940",
        place=where.removeprefix(f"{label}: "),
    )


def _mt_statement_id(message: _Message) -> str:
    return f"{message.reference}/{message.number}"


def _mt_entry(message: _Message, first: str, rest: list[str], where: str, label: str) -> StatementEntry:
    found = _LINE61_RE.match(first)
    if found is None:
        raise StatementMalformed(
            f"{where}: {first!r} is not a statement line (YYMMDD[MMDD]C|D|RC|RD[funds]amount type reference[//bank])"
        )
    currency = message.currency
    funds = found.group("funds")
    if funds is not None and funds != currency[2]:
        raise StatementMalformed(f"{where}: funds code {funds!r} is not the third letter of {currency}")
    amount_minor = _mt_amount(found.group("amount"), currency, where)
    mark = found.group("mark")
    direction: Direction = "CRDT" if mark in ("C", "RD") else "DBIT"
    message.running_minor += amount_minor if direction == "CRDT" else -amount_minor
    value = _mt_date(found.group("value"), where)
    booking = value
    if found.group("entry"):
        month, day = int(found.group("entry")[:2]), int(found.group("entry")[2:])
        year = value.year + (1 if month == 1 and value.month == 12 else -1 if month == 12 and value.month == 1 else 0)
        try:
            booking = date(year, month, day)
        except ValueError:
            raise StatementMalformed(f"{where}: entry date {found.group('entry')!r} is not a date (MMDD)") from None
    customer = found.group("cref").strip()
    bank = (found.group("bref") or "").strip() or None
    return StatementEntry(
        statement_id=_mt_statement_id(message),
        account=message.account,
        booking_date=booking.isoformat(),
        value_date=value.isoformat(),
        amount_minor=amount_minor,
        currency=currency,
        direction=direction,
        reference=(customer if customer.upper() not in _NOT_PROVIDED else None) or bank,
        counterparty=None,
        account_servicer_ref=bank,
        remittance=" ".join(rest) or None,
        status="BOOK",
        reversal=mark.startswith("R"),
        bank_transaction_code=found.group("type"),
        source="MT940",
        place=where.removeprefix(f"{label}: "),
        entry_ref=f"{_mt_statement_id(message)}#{message.entries}",
    )


def _with_information(entry: StatementEntry, text: str) -> StatementEntry:
    """Fold the :86: information to account owner into the entry: structured `/CODE/value` (SEPA banks) or German
    `?NN` sub-fields; what is not understood is kept as remittance text."""
    info = parse_information(text)
    reference = info.get("end_to_end_id")
    return StatementEntry(
        **{
            **{name: getattr(entry, name) for name in entry.__dataclass_fields__},
            "reference": reference or entry.reference,
            "end_to_end_id": reference,
            "counterparty": info.get("counterparty"),
            "counterparty_account": info.get("counterparty_account"),
            "remittance": info.get("remittance") or entry.remittance,
        }
    )


def parse_information(text: str) -> dict[str, str]:
    """Reference, counterparty and remittance from an MT940 :86: text (empty values dropped)."""
    out: dict[str, str] = {}
    if _GVC_RE.search(text):
        parts = _GVC_RE.split(text)
        fields: dict[str, list[str]] = {}
        for code, value in zip(parts[1::2], parts[2::2], strict=True):
            fields.setdefault(code, []).append(value)
        purpose = "".join(
            v for code in sorted(fields) if "20" <= code <= "29" or "60" <= code <= "63" for v in fields[code]
        )
        eref = re.search(r"EREF\+(.*?)(?=(?:KREF|MREF|CRED|DEBT|SVWZ|ABWA|ABWE|IBAN|BIC)\+|$)", purpose)
        svwz = re.search(r"SVWZ\+(.*?)(?=(?:ABWA|ABWE|IBAN|BIC)\+|$)", purpose)
        out["end_to_end_id"] = eref.group(1).strip() if eref else ""
        out["remittance"] = (svwz.group(1) if svwz else purpose).strip()
        out["counterparty"] = "".join(fields.get("32", []) + fields.get("33", [])).strip()
        out["counterparty_account"] = "".join(fields.get("31", [])).strip()
    elif _SLASH_RE.search(text):
        parts = _SLASH_RE.split(text)
        values: dict[str, str] = {}
        for code, value in zip(parts[1::2], parts[2::2], strict=True):
            values.setdefault(code, value.strip("/ "))
        out["end_to_end_id"] = values.get("EREF", "").split("/")[0]
        counterparty = values.get("NAME", "")
        account = values.get("IBAN", "")
        for code in ("CNTP", "BENM", "ORDP"):
            if code in values and not counterparty:  # ING-style CNTP/<IBAN>/<BIC>/<name>/<city>
                pieces = [piece for piece in values[code].split("/")]
                account = account or (pieces[0] if pieces else "")
                counterparty = pieces[2] if len(pieces) > 2 else ""
        out["counterparty"] = counterparty
        out["counterparty_account"] = account
        out["remittance"] = values.get("REMI", "").removeprefix("USTD//").strip("/ ")
    else:
        out["remittance"] = text
    return {key: value for key, value in out.items() if value and value.upper() not in _NOT_PROVIDED}
