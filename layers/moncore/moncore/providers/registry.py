"""Which domain each provider's webhooks belong to: one route `/webhooks/{provider}` (API.md) serves them all, so
provider names are unique across domains. A provider absent here is unknown: its deliveries are stored as rejected
attempts and answered 404. Adding an adapter = one line here and one receiver in functions/webhooks/app.py."""

from __future__ import annotations

KYC = "kyc"

WEBHOOK_DOMAINS: dict[str, str] = {
    "sandbox_kyc": KYC,
}


def webhook_domain(provider: str) -> str | None:
    return WEBHOOK_DOMAINS.get(provider)
