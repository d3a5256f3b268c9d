"""HTTP edge shared by the thin handlers: resolver factory, problem+json mapping, idempotency, request schemas."""
