"""Which domain each provider's webhooks belong to: one route `/webhooks/{provider}` (API.md) serves them all, so
provider names are unique across domains. A provider absent here is unknown: its deliveries are stored as rejected
attempts and answered 404. The sandbox adapters are listed in WEBHOOK_DOMAINS; an adapter loaded from a plugin module
(providers/plugins.py, stack parameter ProviderPlugins) is added by its port's `register` function
(open_banking.register, cards.register_processor, kyc.register), which calls `register` here. A new DOMAIN (not a
new adapter of an existing one) also needs its receiver in functions/webhooks/app.py RECEIVERS and in
REPLAY_RECEIVERS of functions/admin_api/app.py (docs/providers.md, "Adding a provider")."""

from __future__ import annotations

KYC = "kyc"
CARDS = "cards"  # card processor events (moncore.ledger.card_events)
OPEN_BANKING = "open_banking"  # collections and payouts (moncore.ledger.open_banking)

WEBHOOK_DOMAINS: dict[str, str] = {
    "sandbox_kyc": KYC,
    "sandbox_cards": CARDS,
    "sandbox_open_banking": OPEN_BANKING,
    "sandbox_open_banking_instant": OPEN_BANKING,
}
_REGISTERED: dict[str, str] = {}  # adapters registered at run time by plugin modules


def webhook_domain(provider: str) -> str | None:
    found = WEBHOOK_DOMAINS.get(provider) or _REGISTERED.get(provider)
    if found is None:
        from moncore.providers import plugins  # noqa: PLC0415 - plugin modules import this one

        plugins.load()
        found = _REGISTERED.get(provider)
    return found


def register(provider: str, domain: str) -> None:
    """A plugin adapter's webhooks go to `domain` (names stay unique across domains)."""
    known = WEBHOOK_DOMAINS.get(provider) or _REGISTERED.get(provider)
    if known is not None and known != domain:
        raise ValueError(f"provider {provider!r} is already registered for {known}")
    _REGISTERED[provider] = domain
