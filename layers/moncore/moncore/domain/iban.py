"""IBAN checks of a payout beneficiary (ISO 13616): pure, no I/O.

`python-stdnum` (stdnum.iban) does the work: the country's registered IBAN length and BBAN structure, and the ISO
7064 mod-97 check digits (docs/decisions.md 37). The kernel keeps only the electronic format (no spaces, upper
case) and the country, which the geo rules check like any counterparty's (domain.geo.check_counterparty_country).
"""

from __future__ import annotations

from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError

from moncore.domain.errors import ValidationFailed


def check_iban(value: str, *, loc: tuple[str, ...] = ("body", "beneficiary", "iban")) -> str:
    """The IBAN in electronic format, or ValidationFailed naming what is wrong (format, length, check digits)."""
    try:
        return str(stdnum_iban.validate(value, check_country=True))
    except ValidationError as invalid:
        raise ValidationFailed(
            f"the beneficiary IBAN is not valid: {invalid}", errors=[{"loc": list(loc), "msg": str(invalid)}]
        ) from None


def masked(iban: str) -> str:
    """For logs and audit details: country, check digits and the last four characters."""
    return f"{iban[:4]}{'*' * max(0, len(iban) - 8)}{iban[-4:]}"
