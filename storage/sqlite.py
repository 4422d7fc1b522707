"""SQLite Store: the backend composed from its per-concern mixins (one module each) over SqliteBase.

Point reads do not hop to the connection's thread (see storage/sqlite_base.py); every write is one transaction
body in one hop, committed in groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.sqlite_api import ApiVerbs
from storage.sqlite_base import SqliteBase
from storage.sqlite_catalog import Catalog
from storage.sqlite_customers import Customers
from storage.sqlite_distributors import Distributors
from storage.sqlite_reconcile import Reconciliation
from storage.sqlite_reports import Reports
from storage.sqlite_risk import Risk
from storage.sqlite_sales import Sales
from storage.sqlite_shared import SharedState
from storage.sqlite_supply import Supply
from storage.sqlite_tickets import Tickets
from storage.sqlite_vault import VaultCodes
from storage.sqlite_wechatpay import ExtraPayments


class SqliteStore(Catalog, VaultCodes, Sales, Customers, SharedState, Risk, Tickets, ExtraPayments, Supply, ApiVerbs,
                  Reports, Distributors, Reconciliation, SqliteBase):
    """The Store protocol (storage/protocol.py) on SQLite."""


if TYPE_CHECKING:  # mypy checks here that the composed class implements every concern's protocol
    from storage.protocol import Store

    def _implements_store(store: SqliteStore) -> Store:
        return store
