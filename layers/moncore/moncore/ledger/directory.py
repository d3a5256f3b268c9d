"""Account directory: the immutable facts of an account (tenant, currency, kind, user) cached per container.

Why a cache is safe here: these attributes never change after creation, and everything that can change (status,
balance) is enforced by conditions inside the posting transaction, not by this read. A warm transfer therefore needs no
read at all before its single TransactWriteItems.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from moncore.domain.errors import CurrencyMismatch, NotFound
from moncore.domain.transactions import AccountRef
from moncore.store import accounts as store

_MAX_ENTRIES = 50_000


class AccountDirectory:
    def __init__(self) -> None:
        self._refs: OrderedDict[tuple[str, str], AccountRef] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, tenant_id: str, account_ids: list[str], currency: str) -> list[AccountRef]:
        """Refs of the given accounts of this tenant, all in `currency`; NotFound / CurrencyMismatch otherwise."""
        missing = [a for a in account_ids if self._get(tenant_id, a) is None]
        if missing:
            for ref in store.account_refs(tenant_id, missing).values():
                self._put(tenant_id, ref)
        refs = []
        for account_id in account_ids:
            found = self._get(tenant_id, account_id)
            if found is None:
                raise NotFound(f"account {account_id} not found")
            if found.currency != currency:
                raise CurrencyMismatch(f"account {account_id} holds {found.currency}, not {currency}")
            refs.append(found)
        return refs

    def lookup(self, tenant_id: str, account_id: str) -> AccountRef:
        """The ref of one account of this tenant whatever its currency (an FX conversion learns the target currency
        from the account); NotFound otherwise."""
        found = self._get(tenant_id, account_id)
        if found is None:
            found = store.account_refs(tenant_id, [account_id]).get(account_id)
            if found is None:
                raise NotFound(f"account {account_id} not found")
            self._put(tenant_id, found)
        return found

    def remember(self, tenant_id: str, ref: AccountRef) -> None:
        self._put(tenant_id, ref)

    def _get(self, tenant_id: str, account_id: str) -> AccountRef | None:
        with self._lock:
            ref = self._refs.get((tenant_id, account_id))
            if ref is not None:
                self._refs.move_to_end((tenant_id, account_id))
            return ref

    def _put(self, tenant_id: str, ref: AccountRef) -> None:
        with self._lock:
            self._refs[(tenant_id, ref.account_id)] = ref
            while len(self._refs) > _MAX_ENTRIES:
                self._refs.popitem(last=False)


DIRECTORY = AccountDirectory()
