"""Bank statement parsing (docs/reconciliation.md "Statement formats"): camt.053 (.001.02 and .001.08), camt.054 and
MT940 into normalised entries and balances, malformed files refused with the place named, and `moncore statements
parse` (API.md "Command line").

The shared sample files (../shared/data/statements, never edited) are checked value by value against what the files
say; the other statements are built here, each to exercise one rule.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moncore.cli import main as cli_main
from moncore.domain.errors import StatementMalformed
from moncore.domain.money import currency_exponent
from moncore.domain.statements import StatementBalance, StatementEntry, amount_minor_from_text
from moncore.reconciliation.statements import entries, parse_information, parse_statement

COPY = Path(__file__).resolve().parents[1] / "data" / "statements" / "camt053"  # tests/data/statements/README.md


def _shared_original() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "statements" / "camt053"
        if candidate.is_dir():
            return candidate
    return None


def _shared_statements() -> Path:
    """The shared originals beside the repository, else the copy the tests carry (a clone on its own)."""
    return _shared_original() or COPY


def test_the_carried_copy_equals_the_shared_originals() -> None:
    copied = sorted(path.name for path in COPY.glob("*.xml"))
    assert len(copied) == 4, copied
    original = _shared_original()
    if original is not None:  # beside the shared data (this workspace, CI with ../shared): byte for byte the same
        assert copied == sorted(path.name for path in original.glob("*.xml"))
        for name in copied:
            assert (COPY / name).read_bytes() == (original / name).read_bytes(), name


SHARED = _shared_statements()


def parse(text: str | bytes, name: str = "test.xml") -> list[StatementEntry | StatementBalance]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return list(parse_statement(io.BytesIO(data), name=name))


def balances(records: list[Any]) -> list[tuple[str, str, str | None, int, str]]:
    return [
        (r.statement_id, r.type, r.date, r.amount_minor, r.currency) for r in records if isinstance(r, StatementBalance)
    ]


def only_entries(records: list[Any]) -> list[StatementEntry]:
    return [r for r in records if isinstance(r, StatementEntry)]


def malformed(text: str | bytes, name: str = "bad.xml") -> str:
    with pytest.raises(StatementMalformed) as caught:
        parse(text, name)
    return str(caught.value.detail)


# ------------------------------------------------------------------------------------------- the shared sample files


def test_shared_minimal_camt053_v2() -> None:
    records = list(parse_statement(SHARED / "camt053.v2.minimal.xml"))
    stmt = "253EURNL26VAYB8060476890"
    # Four balances before the entry, in file order; debit balances negative; JPY has no minor unit.
    assert balances(records) == [
        (stmt, "OPBD", "2014-12-30", 1815, "EUR"),
        (stmt, "CLBD", "2014-12-31", -2700, "SEK"),
        (stmt, "OPAV", "2014-12-30", 3500, "CHF"),
        (stmt, "CLAV", "2014-12-31", -2700, "JPY"),
    ]
    assert [type(r).__name__ for r in records] == ["StatementBalance"] * 4 + ["StatementEntry"]
    (entry,) = only_entries(records)
    assert entry == StatementEntry(
        statement_id=stmt,
        account="NL26VAYB8060476890",
        booking_date="2014-12-31",
        value_date="2015-01-02",
        amount_minor=885,
        currency="EUR",
        direction="CRDT",
        reference="4654654654654654",  # no EndToEndId: the structured creditor reference (SCOR)
        counterparty="NAME NAME",  # the debtor of a credit
        counterparty_account="NL56AGDH9619008421",
        end_to_end_id=None,
        account_servicer_ref=None,
        remittance=None,
        status="BOOK",
        reversal=False,
        bank_transaction_code="544",
        source="camt.053.001.02",
        place="line 90 Stmt[1] Ntry[1]",
        entry_ref=f"{stmt}#1",
    )
    assert entry.signed_minor == 885


def test_shared_camt053_with_party_ids_reads_like_the_minimal_one() -> None:
    with_ids = list(parse_statement(SHARED / "camt053.v2.with-party-ids.xml"))
    minimal = list(parse_statement(SHARED / "camt053.v2.minimal.xml"))
    assert balances(with_ids) == balances(minimal)
    (entry,) = only_entries(with_ids)
    assert (entry.amount_minor, entry.currency, entry.direction) == (885, "EUR", "CRDT")
    assert (entry.reference, entry.counterparty, entry.counterparty_account) == (
        "4654654654654654",
        "NAME NAME",
        "NL56AGDH9619008421",
    )
    assert entry.place == "line 90 Stmt[1] Ntry[1]"


def test_shared_multi_statement_camt053() -> None:
    records = list(parse_statement(SHARED / "camt053.v2.multi.statement.xml"))
    first, second = "253EURNL26VAYB8060476890", "254EURNL26VAYB8060476890"
    assert balances(records) == [
        (first, "OPBD", "2014-12-30", 1815, "EUR"),
        (first, "CLBD", "2014-12-31", 2700, "EUR"),
        (second, "OPBD", "2014-12-30", 2700, "EUR"),
        (second, "CLBD", "2014-12-31", 2000, "EUR"),
    ]
    one, two = only_entries(records)
    assert (one.statement_id, one.amount_minor, one.direction, one.reference, one.end_to_end_id) == (
        first,
        885,
        "CRDT",
        "000000001",
        "000000001",
    )
    # The credit names only a creditor whose account is not the statement's: that party is the counterparty.
    assert (one.counterparty, one.counterparty_account) == ("Company Name 1", "NL56AGDH9619008421")
    assert one.remittance == "Transaction Description 1"
    assert (two.statement_id, two.amount_minor, two.direction, two.signed_minor, two.reference) == (
        second,
        700,
        "DBIT",
        -700,
        "000000002",
    )
    assert (two.counterparty, two.remittance) == ("Company Name 2", "Transaction Description 2")
    assert [one.entry_ref, two.entry_ref] == [f"{first}#1", f"{second}#1"]
    assert [one.place, two.place] == ["line 66 Stmt[1] Ntry[1]", "line 145 Stmt[2] Ntry[1]"]
    # Each statement adds up: opening + its entries = closing.
    for stmt, entry in ((first, one), (second, two)):
        opening, closing = (b[3] for b in balances(records) if b[0] == stmt)
        assert opening + entry.signed_minor == closing


def test_shared_camt054_notification() -> None:
    (entry,) = list(parse_statement(SHARED / "camt054.v2.with-account-name.xml"))
    assert isinstance(entry, StatementEntry)
    assert (entry.statement_id, entry.account, entry.source) == (
        "AAAASESS-FP-ACCR001",
        "CH2801234000123456789",
        "camt.054.001.02",
    )
    assert (entry.amount_minor, entry.currency, entry.direction, entry.signed_minor) == (
        20000000,
        "SEK",
        "DBIT",
        -20000000,
    )
    assert (entry.booking_date, entry.value_date) == (None, None)  # a notification may carry no dates
    assert entry.bank_transaction_code == "PMNT/ICDT/DMCT"
    # The only party named is the debtor, whose account is the notification's own: no counterparty, no reference.
    assert (entry.reference, entry.counterparty, entry.counterparty_account) == (None, None, None)
    assert entry.place == "line 17 Ntfctn[1] Ntry[1]"


# ------------------------------------------------------------------------------------------ camt.053.001.08, built

CAMT053_V08 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>MSG-0008</MsgId><CreDtTm>2026-11-21T06:00:00+01:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-2026-11-20</Id>
      <CreDtTm>2026-11-21T06:00:00+01:00</CreDtTm>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">1000.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
        <Dt><Dt>2026-11-19</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">1009.50</Amt><CdtDbtInd>CRDT</CdtDbtInd>
        <Dt><DtTm>2026-11-20T23:59:59+01:00</DtTm></Dt></Bal>
      <TxsSummry><TtlNtries><NbOfNtries>5</NbOfNtries></TtlNtries></TxsSummry>
      <Ntry>
        <NtryRef>1</NtryRef>
        <Amt Ccy="EUR">250.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><DtTm>2026-11-20T09:15:00+01:00</DtTm></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>BANKREF-1</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>E2E-0001</EndToEndId><TxId>TX-1</TxId></Refs>
          <RltdPties>
            <Dbtr><Pty><Nm>Alice Example</Nm></Pty></Dbtr>
            <DbtrAcct><Id><IBAN>FR7630006000011234567890189</IBAN></Id></DbtrAcct>
            <Cdtr><Pty><Nm>MonCore Safeguarding</Nm></Pty></Cdtr>
            <CdtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></CdtrAcct>
          </RltdPties>
          <RmtInf><Ustrd>Invoice 42</Ustrd><Ustrd>thank you</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">40.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>NOTPROVIDED</EndToEndId><TxId>TX-REV-7</TxId></Refs>
          <RltdPties><Cdtr><Pty><Nm>Bob Shop</Nm></Pty></Cdtr></RltdPties>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">300.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-21</Dt></ValDt>
        <AcctSvcrRef>BATCH-9</AcctSvcrRef>
        <NtryDtls>
          <Btch><PmtInfId>PAYOUTS-20261120</PmtInfId><NbOfTxs>3</NbOfTxs></Btch>
          <TxDtls><Refs><EndToEndId>PO-1</EndToEndId></Refs><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>
            <RltdPties><Cdtr><Pty><Nm>Carol</Nm></Pty></Cdtr></RltdPties></TxDtls>
          <TxDtls><Refs><EndToEndId>PO-2</EndToEndId></Refs><Amt Ccy="EUR">120.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>
            <RltdPties><Cdtr><Pty><Nm>Dan</Nm></Pty></Cdtr></RltdPties></TxDtls>
          <TxDtls><Refs><EndToEndId>PO-3</EndToEndId></Refs>
            <AmtDtls><TxAmt><Amt Ccy="EUR">80.00</Amt></TxAmt></AmtDtls></TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">99.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt>
        <NtryDtls>
          <Btch><PmtInfId>COLLECT-77</PmtInfId></Btch>
          <TxDtls><Refs><EndToEndId>C-1</EndToEndId></Refs><Amt Ccy="EUR">50.00</Amt></TxDtls>
          <TxDtls><Refs><EndToEndId>C-2</EndToEndId></Refs><Amt Ccy="EUR">40.00</Amt></TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">5.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>PDNG</Cd></Sts>
        <ValDt><Dt>2026-11-22</Dt></ValDt>
        <AcctSvcrRef>PDNG-1</AcctSvcrRef>
        <AddtlNtryInf>Card top-up</AddtlNtryInf>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def test_camt053_v08_entries_reversal_and_batches() -> None:
    records = parse(CAMT053_V08, "v08.xml")
    stmt = "STMT-2026-11-20"
    assert balances(records) == [
        (stmt, "OPBD", "2026-11-19", 100000, "EUR"),
        (stmt, "CLBD", "2026-11-20", 100950, "EUR"),
    ]
    got = [
        (e.entry_ref, e.amount_minor, e.direction, e.reference, e.counterparty, e.status, e.reversal)
        for e in only_entries(records)
    ]
    assert got == [
        (f"{stmt}#1", 25050, "CRDT", "E2E-0001", "Alice Example", "BOOK", False),
        # A reversal is booked on the side it moves money (a returned credit is a debit) and flagged.
        (f"{stmt}#2", 4000, "DBIT", "TX-REV-7", "Bob Shop", "BOOK", True),
        # A batch whose transactions add up to it is split into one entry per transaction...
        (f"{stmt}#3.1", 10000, "DBIT", "PO-1", "Carol", "BOOK", False),
        (f"{stmt}#3.2", 12000, "DBIT", "PO-2", "Dan", "BOOK", False),
        (f"{stmt}#3.3", 8000, "DBIT", "PO-3", None, "BOOK", False),
        # ...one whose transactions do not (50 + 40 != 99) stays one entry, referenced by its batch id.
        (f"{stmt}#4", 9900, "CRDT", "COLLECT-77", None, "BOOK", False),
        (f"{stmt}#5", 500, "CRDT", "PDNG-1", None, "PDNG", False),
    ]
    first, reversal, po1, _po2, _po3, _collect, pending = only_entries(records)
    assert (first.booking_date, first.value_date) == ("2026-11-20", "2026-11-20")  # the date part of the DtTm
    assert (first.counterparty_account, first.account_servicer_ref, first.end_to_end_id) == (
        "FR7630006000011234567890189",
        "BANKREF-1",
        "E2E-0001",
    )
    assert first.remittance == "Invoice 42 thank you"
    assert first.bank_transaction_code == "PMNT/RCDT/ESCT"
    assert (first.source, first.place) == ("camt.053.001.08", "line 14 Stmt[1] Ntry[1]")
    assert reversal.end_to_end_id is None  # NOTPROVIDED is no reference
    assert (po1.account_servicer_ref, po1.value_date, po1.place) == (
        "BATCH-9",
        "2026-11-21",
        "line 39 Stmt[1] Ntry[3] TxDtls[1]",
    )
    assert (pending.booking_date, pending.value_date, pending.remittance) == (None, "2026-11-22", "Card top-up")
    # The booked entries explain the booked balances exactly.
    booked = sum(e.signed_minor for e in only_entries(records) if e.status == "BOOK")
    assert 100000 + booked == 100950


def test_camt_reversal_indicator_is_an_xs_boolean() -> None:
    as_digit = CAMT053_V08.replace("<RvslInd>true</RvslInd>", "<RvslInd>1</RvslInd>")
    assert only_entries(parse(as_digit))[1].reversal is True
    wrong = CAMT053_V08.replace("<RvslInd>true</RvslInd>", "<RvslInd>yes</RvslInd>")
    assert "Ntry[2] RvslInd: 'yes' is not a boolean" in malformed(wrong)


def test_camt053_earlier_versions_read_the_same_structure() -> None:
    """Up to .001.07 a status is a plain code and a party has its name directly; the same statement in .001.04
    gives the same entries."""
    v04 = (
        CAMT053_V08.replace("camt.053.001.08", "camt.053.001.04")
        .replace("<Sts><Cd>BOOK</Cd></Sts>", "<Sts>BOOK</Sts>")
        .replace("<Sts><Cd>PDNG</Cd></Sts>", "<Sts>PDNG</Sts>")
        .replace("<Pty><Nm>", "<Nm>")
        .replace("</Nm></Pty>", "</Nm>")
    )
    new, old = only_entries(parse(CAMT053_V08)), only_entries(parse(v04))
    assert [e.source for e in old] == ["camt.053.001.04"] * 7
    strip = {"source": "", "place": ""}
    assert [e.to_dict() | strip for e in old] == [e.to_dict() | strip for e in new]


def test_camt_in_an_envelope_and_with_a_byte_order_mark() -> None:
    body = CAMT053_V08.split("?>", 1)[1]
    wrapped = f'<?xml version="1.0"?><Envelope xmlns="urn:example:transport"><AppHdr/>{body}</Envelope>'
    assert len(only_entries(parse(wrapped))) == 7
    assert len(only_entries(parse(b"\xef\xbb\xbf" + CAMT053_V08.encode()))) == 7


CAMT054_V08 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>NTF-1</MsgId><CreDtTm>2026-11-20T10:00:00Z</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>NTF-1-1</Id>
      <Acct><Id><Othr><Id>ACC-778899</Id></Othr></Id></Acct>
      <Ntry>
        <Amt Ccy="JPY">1500</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <NtryDtls><TxDtls><Refs><InstrId>INSTR-5</InstrId></Refs>
          <RltdPties><UltmtDbtr><Pty><Nm>Tokyo Trading KK</Nm></Pty></UltmtDbtr></RltdPties>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="USD">12.34</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <NtryDtls><TxDtls><Refs><EndToEndId>FEE-2026-11</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>
"""


def test_camt054_v08_notification() -> None:
    records = parse(CAMT054_V08, "ntf.xml")
    assert balances(records) == []  # a notification declares no balances
    jpy, usd = only_entries(records)
    assert (jpy.account, jpy.amount_minor, jpy.currency, jpy.direction, jpy.reference, jpy.counterparty) == (
        "ACC-778899",
        1500,
        "JPY",
        "CRDT",
        "INSTR-5",
        "Tokyo Trading KK",  # the ultimate debtor when no debtor is named
    )
    assert (usd.amount_minor, usd.currency, usd.signed_minor, usd.reference, usd.booking_date) == (
        1234,
        "USD",
        -1234,
        "FEE-2026-11",
        "2026-11-20",
    )
    assert usd.source == "camt.054.001.08"
    assert usd.entry_ref == "NTF-1-1#2"


# --------------------------------------------------------------------------------------------------- MT940, built

MT940_ONE = """{1:F01BANKDEFFXXXX0000000000}{2:O9401200261120BANKDEFFXXXX00000000002611201200N}{4:
:20:STMT20261120
:25:DE89370400440532013000
:28C:00042/001
:60F:C261119EUR1000,00
:61:2611201120CR250,50NTRFE2E-0001//BANKREF-1
Invoice 42
:86:166?00SEPA-GUTSCHRIFT?20EREF+E2E-0001?21SVWZ+Invoice 42?32Alice Example?31FR7630006000011234567890189
:61:261120D40,00NTRFNONREF//BANKREF-2
:86:/EREF/PAYOUT-77//NAME/Bob Shop/REMI/USTD//Refund order 9/
:61:261120RC10,00NMSCREV-9//BANKREF-3
:86:Reversal of credit 9
:61:261120RD5,00NCHGNONREF
:62F:C261120EUR1205,50
:64:C261120EUR1205,50
-}
"""


def test_mt940_statement_lines_balances_and_information() -> None:
    records = parse(MT940_ONE, "one.sta")
    stmt = "STMT20261120/00042/001"
    assert balances(records) == [
        (stmt, "OPBD", "2026-11-19", 100000, "EUR"),
        (stmt, "CLBD", "2026-11-20", 120550, "EUR"),
        (stmt, "CLAV", "2026-11-20", 120550, "EUR"),
    ]
    got = [
        (e.amount_minor, e.direction, e.reversal, e.reference, e.counterparty, e.remittance, e.account_servicer_ref)
        for e in only_entries(records)
    ]
    assert got == [
        # funds code R (third letter of EUR), entry date 1120; the :86: EREF is the reference
        (25050, "CRDT", False, "E2E-0001", "Alice Example", "Invoice 42", "BANKREF-1"),
        # NONREF customer reference, /EREF/ in the :86:
        (4000, "DBIT", False, "PAYOUT-77", "Bob Shop", "Refund order 9", "BANKREF-2"),
        # RC = reversal of a credit: money out
        (1000, "DBIT", True, "REV-9", None, "Reversal of credit 9", "BANKREF-3"),
        # RD = reversal of a debit: money in; no reference at all
        (500, "CRDT", True, None, None, None, None),
    ]
    first = only_entries(records)[0]
    assert (first.booking_date, first.value_date, first.counterparty_account, first.bank_transaction_code) == (
        "2026-11-20",
        "2026-11-20",
        "FR7630006000011234567890189",
        "NTRF",
    )
    assert (first.account, first.source, first.place, first.entry_ref) == (
        "DE89370400440532013000",
        "MT940",
        "line 6 :61:",
        f"{stmt}#1",
    )


MT940_MULTI = """:20:MULTI-1
:25:NL91ABNA0417164300
:28C:7/1
:60F:C261230EUR100,00
:61:2612310101C20,00NTRFYEAR-END//B1
:62M:C261231EUR120,00
-
:20:MULTI-1
:25:NL91ABNA0417164300
:28C:7/2
:60M:C261231EUR120,00
:61:270102D0,50NCHGFEE-1
:62F:C270102EUR119,50
:65:C270103EUR119,50
:86:End of statement 7
:20:YEN-1
:25:JP-ACC-1
:28C:1
:60F:D261119JPY150000,
:61:261120CY2500,NTRFJP-1
:62F:D261120JPY147500,
"""


def test_mt940_several_statements_in_one_file() -> None:
    records = parse(MT940_MULTI, "multi.sta")
    assert balances(records) == [
        ("MULTI-1/7/1", "OPBD", "2026-12-30", 10000, "EUR"),
        ("MULTI-1/7/1", "ITBD", "2026-12-31", 12000, "EUR"),
        ("MULTI-1/7/2", "ITBD", "2026-12-31", 12000, "EUR"),
        ("MULTI-1/7/2", "CLBD", "2027-01-02", 11950, "EUR"),
        ("MULTI-1/7/2", "FWAV", "2027-01-03", 11950, "EUR"),
        ("YEN-1/1", "OPBD", "2026-11-19", -150000, "JPY"),  # a debit balance, JPY without minor unit
        ("YEN-1/1", "CLBD", "2026-11-20", -147500, "JPY"),
    ]
    year_end, fee, yen = only_entries(records)
    # The entry date 0101 after value date 2026-12-31 is in the next year.
    assert (year_end.value_date, year_end.booking_date, year_end.amount_minor, year_end.reference) == (
        "2026-12-31",
        "2027-01-01",
        2000,
        "YEAR-END",
    )
    assert (fee.amount_minor, fee.direction, fee.statement_id, fee.entry_ref) == (
        50,
        "DBIT",
        "MULTI-1/7/2",
        "MULTI-1/7/2#1",
    )
    assert (yen.amount_minor, yen.currency, yen.direction, yen.reference) == (2500, "JPY", "CRDT", "JP-1")


def test_mt940_rje_file_with_dollar_separated_envelopes() -> None:
    one = ":20:A\n:25:X\n:28C:1\n:60F:C261119EUR0,00\n:61:261120C1,00NTRFREF-A\n:62F:C261120EUR1,00\n-}"
    two = one.replace(":20:A", ":20:B").replace("REF-A", "REF-B")
    text = f"{{1:F01BANK}}{{2:O940}}{{4:\n{one}\n$\n{{1:F01BANK}}{{2:O940}}{{4:\n{two}\n"
    assert [(e.statement_id, e.reference) for e in only_entries(parse(text, "rje.sta"))] == [
        ("A/1", "REF-A"),
        ("B/1", "REF-B"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "?20EREF+A-1?21SVWZ+Rent May?32Jane Doe",
            {"end_to_end_id": "A-1", "remittance": "Rent May", "counterparty": "Jane Doe"},
        ),
        ("/EREF/NOTPROVIDED/REMI/USTD//x/", {"remittance": "x"}),
        (
            "/CNTP/NL91ABNA0417164300/ABNANL2A/ACME BV/AMSTERDAM/",
            {"counterparty": "ACME BV", "counterparty_account": "NL91ABNA0417164300"},
        ),
        ("Plain text", {"remittance": "Plain text"}),
    ],
)
def test_mt940_information_to_account_owner(text: str, expected: dict[str, str]) -> None:
    assert parse_information(text) == expected


# ------------------------------------------------------------------------------------------------ amounts, no float


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("8.85", "EUR", 885),
        ("8.8", "EUR", 880),
        ("8", "EUR", 800),
        ("8.", "EUR", 800),
        ("0.01", "EUR", 1),
        ("2700", "JPY", 2700),
        ("1.234", "BHD", 1234),
        ("999999999999.99", "EUR", 99999999999999),
    ],
)
def test_amounts_to_minor_units(text: str, currency: str, minor: int) -> None:
    assert amount_minor_from_text(text, currency, place="p") == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("8.855", "EUR", "p: amount '8.855' has 3 decimals, EUR allows 2"),
        ("10.0", "JPY", "p: amount '10.0' has 1 decimals, JPY allows 0"),
        ("1.1234567", "EUR", "p: amount '1.1234567' has 7 decimals, EUR allows 2"),
        ("-5.00", "EUR", "p: amount '-5.00' is not a plain decimal number"),
        ("1e3", "EUR", "p: amount '1e3' is not a plain decimal number"),
        ("\u0663.00", "EUR", "p: amount '\u0663.00' is not a plain decimal number"),  # an Arabic-Indic digit
        ("1234567890123456789", "EUR", "p: amount '1234567890123456789' has more than 18 digits"),
        ("", "EUR", "p: missing amount"),
        ("5.00", "XYZ", "p: unknown currency 'XYZ'"),
        ("5.00", "XAU", "p: unknown currency 'XAU'"),  # not money
    ],
)
def test_amounts_refused(text: str, currency: str, message: str) -> None:
    with pytest.raises(StatementMalformed) as caught:
        amount_minor_from_text(text, currency, place="p")
    assert caught.value.detail == message


@given(
    minor=st.integers(min_value=0, max_value=10**15),
    currency=st.sampled_from(["EUR", "JPY", "BHD", "CLF", "GBP", "KWD", "ISK"]),
)
def test_amount_text_round_trips_to_the_same_minor_units(minor: int, currency: str) -> None:
    exponent = currency_exponent(currency)
    digits = str(minor).rjust(exponent + 1, "0")
    text = f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
    assert amount_minor_from_text(text, currency, place="p") == minor


# ---------------------------------------------------------------------------------------------- malformed camt


LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE Document [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&lol4;</Id>
<Acct><Id><IBAN>X</IBAN></Id></Acct></Stmt></BkToCstmrStmt></Document>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE Document [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&xxe;</Id>
<Acct><Id><IBAN>X</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts></Ntry></Stmt></BkToCstmrStmt></Document>
"""


def _v08(old: str, new: str) -> str:
    assert old in CAMT053_V08, old
    return CAMT053_V08.replace(old, new, 1)


CAMT_CASES = [
    (
        CAMT053_V08[: CAMT053_V08.index("<Ntry>", 1000)],
        "bad.xml: line 31: not well-formed XML (Premature end of data in tag Stmt line 5",
    ),
    (LAUGHS, "bad.xml: a DOCTYPE is not allowed in an ISO 20022 message (entities refused)"),
    (XXE, "bad.xml: a DOCTYPE is not allowed in an ISO 20022 message (entities refused)"),
    (
        CAMT053_V08.replace("camt.053.001.08", "pain.001.001.09"),
        "bad.xml: line 2: namespace 'urn:iso:std:iso:20022:tech:xsd:pain.001.001.09' is not a camt.053 or camt.054",
    ),
    (
        CAMT053_V08.replace(' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"', ""),
        "bad.xml: line 2: <Document> has no namespace",
    ),
    (CAMT053_V08.replace("camt.053.001.08", "camt.052.001.08"), "bad.xml: line 2: camt.052 is not supported"),
    (
        CAMT053_V08.replace("camt.053.001.08", "camt.053.001.01"),
        "bad.xml: line 2: camt.053.001.01 is not supported",
    ),
    (
        _v08('<Amt Ccy="EUR">250.50</Amt>', '<Amt Ccy="EUR">250.505</Amt>'),
        "bad.xml: line 14 Stmt[1] Ntry[1] Amt (line 16): amount '250.505' has 3 decimals, EUR allows 2",
    ),
    (
        _v08('<Amt Ccy="EUR">250.50</Amt>', '<Amt Ccy="XYZ">250.50</Amt>'),
        "bad.xml: line 14 Stmt[1] Ntry[1] Amt (line 16): unknown currency 'XYZ'",
    ),
    (_v08('<Amt Ccy="EUR">250.50</Amt>', "<Amt>250.50</Amt>"), "Ntry[1] Amt (line 16): amount has no currency"),
    (
        _v08('<Amt Ccy="EUR">1000.00</Amt>', '<Amt Ccy="EUR">1,000.00</Amt>'),
        "Stmt[1] Bal[1] Amt (line 9): amount '1,000.00' is not a plain decimal number",
    ),
    (
        _v08('<Amt Ccy="EUR">100.00</Amt>', '<Amt Ccy="EUR">100.001</Amt>'),
        "Ntry[3] TxDtls[1] Amt (line 45): amount '100.001' has 3 decimals",
    ),
    (
        _v08("<CdtDbtInd>DBIT</CdtDbtInd><RvslInd>", "<CdtDbtInd>DEBIT</CdtDbtInd><RvslInd>"),
        "Ntry[2]: CdtDbtInd is 'DEBIT', expected CRDT or DBIT",
    ),
    (_v08("<Sts><Cd>PDNG</Cd></Sts>", ""), "bad.xml: line 62 Stmt[1] Ntry[5]: entry has no status (Sts)"),
    (
        _v08("<BookgDt><Dt>2026-11-20</Dt></BookgDt>", "<BookgDt><Dt>2026-11-31</Dt></BookgDt>"),
        "Ntry[2] BookgDt: '2026-11-31' is not a date",
    ),
    (_v08("<Dt><Dt>2026-11-19</Dt></Dt>", ""), "Stmt[1] Bal[1] Dt: missing date"),
    (_v08("<Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>", ""), "Stmt[1] Bal[1]: balance has no type"),
    (_v08("<Id>STMT-2026-11-20</Id>", ""), "bad.xml: line 5 Stmt[1]: the Stmt has no Id"),
    (
        CAMT053_V08.split("<Stmt>", maxsplit=1)[0] + "</BkToCstmrStmt></Document>",
        "bad.xml: the camt.053.001.08 message has no <Stmt>",
    ),
    ("<Statement><Line/></Statement>", "bad.xml: no ISO 20022 <Document> element"),
    ("", "bad.xml: the file is empty"),
]


@pytest.mark.parametrize(("text", "message"), CAMT_CASES, ids=[message[:70] for _, message in CAMT_CASES])
def test_malformed_camt_is_refused_naming_the_place(text: str, message: str) -> None:
    assert message in malformed(text)


def test_no_entity_is_ever_expanded() -> None:
    """Even where the DOCTYPE check could not run first, lxml resolves no entity and loads nothing: the external
    entity of an XXE never reaches a record."""
    with pytest.raises(StatementMalformed):
        list(entries(io.BytesIO(XXE.encode()), name="x.xml"))


# --------------------------------------------------------------------------------------------- malformed MT940


def _mt(old: str, new: str) -> str:
    assert old in MT940_ONE, old
    return MT940_ONE.replace(old, new, 1)


MT940_CASES = [
    (
        _mt(":62F:C261120EUR1205,50\n:64:C261120EUR1205,50\n", ""),
        "bad.sta: line 14: MT940 message 1 (from line 2) ends after :61: without its closing balance (:62F: or :62M:)",
    ),
    (
        _mt(":62F:C261120EUR1205,50", ":62F:C261120EUR1205,51"),
        "bad.sta: line 14 :62F:: closing balance 120551 does not equal the opening balance plus the entries (120550, "
        "in minor units)",
    ),
    (_mt("CR250,50", "CR250,505"), "bad.sta: line 6 :61:: amount '250.505' has 3 decimals, EUR allows 2"),
    (_mt("CR250,50", "CD250,50"), "bad.sta: line 6 :61:: funds code 'D' is not the third letter of EUR"),
    (
        _mt("CR250,50", "CR250.50"),
        "bad.sta: line 6 :61:: '2611201120CR250.50NTRFE2E-0001//BANKREF-1' is not a statement line",
    ),
    (_mt("D40,00", "D4000"), "bad.sta: line 9 :61:: amount '4000' must have exactly one decimal comma"),
    (_mt(":60F:C261119EUR1000,00", ":60F:C261119XYZ1000,00"), "bad.sta: line 5 :60F:: unknown currency 'XYZ'"),
    (
        _mt(":60F:C261119EUR1000,00", ":60F:C261399EUR1000,00"),
        "bad.sta: line 5 :60F:: '261399' is not a date (YYMMDD)",
    ),
    (
        _mt(":64:C261120EUR1205,50", ":64:C261120USD1205,50"),
        "bad.sta: line 15 :64:: balance in USD, the statement is in EUR",
    ),
    (_mt(":28C:00042/001\n", ""), "bad.sta: line 4 :60F:: not allowed here (after :25:, expected :28:, :28C:)"),
    (_mt(":86:Reversal of credit 9", ":99:Reversal of credit 9"), "bad.sta: line 12: unknown MT940 tag :99:"),
    ("Hello, bank\n", "bad.sta: line 1: 'Hello, bank' is not an MT940 field (:NN:)"),
    ("\n\n   \n", "bad.sta: the file is empty"),
]


@pytest.mark.parametrize(("text", "message"), MT940_CASES, ids=[message[:70] for _, message in MT940_CASES])
def test_malformed_mt940_is_refused_naming_the_place(text: str, message: str) -> None:
    assert message in malformed(text, "bad.sta")


# ------------------------------------------------------------------------------------------------------ the CLI


API_ENTRY_FIELDS = {"booking_date", "amount_minor", "currency", "direction", "reference", "counterparty"}


def test_cli_prints_one_json_object_per_entry_and_per_balance(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["statements", "parse", str(SHARED / "camt053.v2.multi.statement.xml")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["record"] for o in objects] == ["balance", "balance", "entry", "balance", "balance", "entry"]
    entry_objects = [o for o in objects if o["record"] == "entry"]
    for obj in entry_objects:
        assert obj.keys() >= API_ENTRY_FIELDS
        assert obj["direction"] in ("CRDT", "DBIT")
        assert isinstance(obj["amount_minor"], int) and obj["amount_minor"] >= 0
    assert [{k: o[k] for k in sorted(API_ENTRY_FIELDS)} for o in entry_objects] == [
        {
            "amount_minor": 885,
            "booking_date": "2014-12-31",
            "counterparty": "Company Name 1",
            "currency": "EUR",
            "direction": "CRDT",
            "reference": "000000001",
        },
        {
            "amount_minor": 700,
            "booking_date": "2014-12-31",
            "counterparty": "Company Name 2",
            "currency": "EUR",
            "direction": "DBIT",
            "reference": "000000002",
        },
    ]
    closing = objects[1]
    assert {
        k: closing[k] for k in ("type", "date", "amount_minor", "currency", "direction", "signed_amount_minor")
    } == {
        "type": "CLBD",
        "date": "2014-12-31",
        "amount_minor": 2700,
        "currency": "EUR",
        "direction": "CRDT",
        "signed_amount_minor": 2700,
    }


def test_cli_debit_balance_is_a_magnitude_with_its_direction(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["statements", "parse", str(SHARED / "camt053.v2.minimal.xml")]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    sek = next(o for o in objects if o["record"] == "balance" and o["currency"] == "SEK")
    assert (sek["amount_minor"], sek["direction"], sek["signed_amount_minor"]) == (2700, "DBIT", -2700)


def test_cli_malformed_file_exits_2_with_the_place_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "stmt.sta"
    bad.write_text(_mt(":62F:C261120EUR1205,50", ":62F:C261120EUR1205,51"), encoding="utf-8")
    assert cli_main(["statements", "parse", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # validated to the end before anything is printed: no partial statement
    assert err.startswith("error: stmt.sta: line 14 :62F:: closing balance 120551")
    assert cli_main(["statements", "parse", str(tmp_path / "missing.xml")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_cli_output_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """`moncore statements parse F | head -1`: the reader stops early; no 'Broken pipe' error, exit 0."""
    lines = "\n".join(f":61:261120C1,00NTRFREF-{n:05d}" for n in range(3000))
    big = tmp_path / "big.sta"
    big.write_text(
        f":20:BIG\n:25:ACC\n:28C:1\n:60F:C261119EUR0,00\n{lines}\n:62F:C261120EUR3000,00\n", encoding="utf-8"
    )
    done = subprocess.run(
        f"'{sys.executable}' -m moncore.cli statements parse '{big}' | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert json.loads(done.stdout)["type"] == "OPBD"
