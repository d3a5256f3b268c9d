"""Calls to providers, audited when they fail (requirement: every provider call leaves an audit event).

A call that succeeds is recorded by what the kernel does with its answer (the funding, the card, the quote, with the
provider's reference and the caller's correlation id). A call that fails leaves nothing else behind, so it is audited
here as `provider.call_failed` (provider, call, error class, detail, correlation id) before the error is raised:
the provider's own refusal as it is (a DomainError such as QuoteExpired), anything else (a timeout, a broken
connection, a bug in an adapter) as a retryable ProviderUnavailable, since every call is idempotent on our reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moncore.domain.audit import audit_event
from moncore.domain.context import Caller
from moncore.domain.errors import DomainError, ProviderUnavailable
from moncore.store import audit as audit_store


def call_failed(caller: Caller, subject_id: str, provider: str, call: str, error: Exception) -> DomainError:
    """Audit a provider call that failed (nothing was posted by it) and return what to raise."""
    audit_store.append(
        audit_event(
            tenant_id=caller.require_tenant(),
            action="provider.call_failed",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=subject_id,
            payload={"provider": provider, "call": call, "error": type(error).__name__, "detail": str(error)[:500]},
        )
    )
    if isinstance(error, DomainError):
        return error
    return ProviderUnavailable(
        f"the provider {provider} did not answer ({type(error).__name__}); retry with the same key"
    )


@contextmanager
def provider_call(caller: Caller, *, provider: str, call: str, subject_id: str) -> Iterator[None]:
    """Run one provider call; on failure audit it and raise what call_failed returns."""
    try:
        yield
    except Exception as failed:
        raise call_failed(caller, subject_id, provider, call, failed) from failed
