"""A second open banking adapter that exists only in the tests: the proof that swapping the simulated adapter for
another implementation of the port needs no kernel change (docs/providers.md, "Adding a provider").

It speaks its own wire format (nothing like the sandbox's), answers every collection and payout PENDING, and reports
outcomes by webhook. It reaches the kernel's functions the way a real adapter module would: the stack parameter
ProviderPlugins names this module (tests/integration/conftest.py), moncore.providers.plugins imports it, and the
`register` call below makes `minimal_bank` selectable as a tenant's `open_banking_provider` and routes
/webhooks/minimal_bank to the open banking receiver.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moncore.domain.errors import ValidationFailed
from moncore.providers.open_banking import (
    CollectionRequest,
    Kind,
    PayoutRequest,
    ProviderEvent,
    Status,
    Submission,
    register,
)

NAME = "minimal_bank"
# The bank's own books (shared by every worker process of the local stack): calls received and payments booked.
STATE_DIR = Path(tempfile.gettempdir()) / "moncore-minimal-bank"
STATE_DIR.mkdir(exist_ok=True)
_KINDS = {"IN": Kind.COLLECTION, "OUT": Kind.PAYOUT}
_STATUSES = {"AUTH": Status.AUTHORIZED, "BOOKED": Status.SETTLED, "REJECTED": Status.FAILED}


class MinimalBank:
    name = NAME

    def collect(self, request: CollectionRequest) -> Submission:
        return Submission(self.name, payment_id("IN", request.reference), Status.PENDING)

    def payout(self, request: PayoutRequest) -> Submission:
        """Books the payment once per client reference. While an outage file exists for it, the bank books the
        payment and then times out before answering (the worst case for the caller: paid, but no answer)."""
        paid = payment_id("OUT", request.reference)
        with (STATE_DIR / f"{paid}.calls").open("a") as calls:
            calls.write(f"{request.beneficiary_iban} {request.amount_minor}\n")
        (STATE_DIR / f"{paid}.booked").touch()  # idempotent: the same reference books the same payment
        if (STATE_DIR / f"{paid}.outage").exists():
            raise TimeoutError("minimal_bank did not answer in time")
        return Submission(self.name, paid, Status.PENDING)

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent:
        try:
            direction, state = str(payload["what"]).split("/")
            return ProviderEvent(
                event_id=str(payload["uid"]),
                kind=_KINDS[direction],
                status=_STATUSES[state],
                provider_ref=str(payload["payment_id"]),
                reference=str(payload["client_reference"]),
                amount_minor=int(payload["cents"]),
                currency=str(payload["ccy"]),
            )
        except (KeyError, ValueError, TypeError):
            raise ValidationFailed("not a minimal_bank event", errors=[{"loc": ["body"], "msg": "shape"}]) from None


def payment_id(direction: str, reference: str) -> str:
    """Idempotent like a real bank's API: the same client reference is the same payment."""
    return f"mb-{direction.lower()}-{hashlib.sha256(reference.encode()).hexdigest()[:20]}"


def event(direction: str, state: str, *, uid: str, reference: str, cents: int, ccy: str = "EUR") -> dict[str, Any]:
    """A webhook body as minimal_bank sends it."""
    return {
        "uid": uid,
        "what": f"{direction}/{state}",
        "payment_id": payment_id(direction, reference),
        "client_reference": reference,
        "cents": cents,
        "ccy": ccy,
    }


register(MinimalBank())
