"""Provider adapters shipped outside the kernel, and the one way every domain keeps its adapters.

Plugin modules are named in the stack parameter ProviderPlugins (environment MONCORE_PROVIDER_PLUGINS, comma-separated
module names) and imported once per process on the first lookup of a provider name the kernel does not know. Each
module registers its adapters when imported (`moncore.providers.open_banking.register(adapter)`,
`moncore.providers.cards.register(adapter)`, `moncore.providers.fx.register(adapter)`,
`moncore.providers.kyc.register(adapter)`, `moncore.providers.screening.register(adapter)`), which makes them
selectable by tenant configuration and, for the domains whose providers call back, routes their webhooks; no kernel
module changes (docs/providers.md, "Adding a provider").

The list is deployment configuration, trusted like code (a module ships in a layer next to the kernel's); an
import error fails loudly on the first lookup rather than leaving a tenant's provider silently unknown.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

from moncore.config import settings
from moncore.domain.errors import ValidationFailed

_LOCK = threading.Lock()
_LOADED: set[str] = set()
T = TypeVar("T")


def load() -> None:
    """Import every configured plugin module not imported yet (cheap after the first call)."""
    wanted = [name.strip() for name in settings().provider_plugins.split(",") if name.strip()]
    if all(name in _LOADED for name in wanted):
        return
    with _LOCK:
        for name in wanted:
            if name not in _LOADED:
                importlib.import_module(name)
                _LOADED.add(name)


class Adapters(Generic[T]):
    """The adapters of one port, by name: those shipped with the kernel, then those plugin modules register.

    `setting` names the tenant configuration field that selects one (`fx_provider`, ...): an unknown name is a
    ValidationFailed located there, so an admin configuring a tenant learns which field is wrong."""

    def __init__(self, what: str, setting: str, builtin: Iterable[tuple[str, T]]) -> None:
        self._what = what
        self._setting = setting
        self._adapters: dict[str, T] = dict(builtin)
        self._lock = threading.Lock()

    def register(self, name: str, adapter: T) -> None:
        with self._lock:
            self._adapters[name] = adapter

    def get(self, name: str) -> T:
        """The adapter named `name` (a tenant's configuration, or a webhook path); plugins load on a miss."""
        adapter = self._adapters.get(name)
        if adapter is None:
            load()
            adapter = self._adapters.get(name)
        if adapter is None:
            raise ValidationFailed(
                f"{self._what} '{name}' is not configured",
                errors=[{"loc": ["body", self._setting], "msg": f"unknown provider {name!r}"}],
            )
        return adapter

    def known(self, name: str) -> bool:
        try:
            self.get(name)
        except ValidationFailed:
            return False
        return True
