"""Provider adapters shipped outside the kernel: modules named in the stack parameter ProviderPlugins (environment
MONCORE_PROVIDER_PLUGINS, comma-separated module names), imported once per process on the first lookup of a
provider name the kernel does not know. Each module registers its adapters when imported (for open banking:
`moncore.providers.open_banking.register(adapter)`), which makes them selectable by tenant configuration and routes
their webhooks; no kernel module changes (docs/providers.md, "Adding a provider").

The list is deployment configuration, trusted like code (a module ships in a layer next to the kernel's); an
import error fails loudly on the first lookup rather than leaving a tenant's provider silently unknown.
"""

from __future__ import annotations

import importlib
import threading

from moncore.config import settings

_LOCK = threading.Lock()
_LOADED: set[str] = set()


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
