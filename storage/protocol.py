"""The Store protocol: every persistence verb the shop uses, implemented by each backend, composed from one protocol
per concern (storage/protocols/): a caller that needs one concern can ask for that protocol only.

Each method is one atomic unit (one transaction).  Compound verbs such as
`apply_payment` exist because the invariants (no oversell, paid means
delivered exactly once) need their steps in one transaction; each backend runs
them in as few round trips as it can (one thread hop on SQLite, one function
call on PostgreSQL).
"""

from __future__ import annotations

from typing import Protocol

from storage.protocols.api import ApiStore
from storage.protocols.catalog import CatalogStore
from storage.protocols.customers import CustomerStore
from storage.protocols.distributors import DistributorStore
from storage.protocols.ledger import LedgerStore
from storage.protocols.orders import OrderStore, OutboxStore, PaymentStore
from storage.protocols.payments_extra import ExtraPaymentStore
from storage.protocols.reconcile import ReconcileStore
from storage.protocols.reports import ReportStore
from storage.protocols.risk import RiskStore
from storage.protocols.schema import SchemaStore
from storage.protocols.shared import SharedStateStore
from storage.protocols.supply import SupplyStore
from storage.protocols.tickets import TicketStore
from storage.protocols.vault import VaultStore


class Store(SchemaStore, CatalogStore, VaultStore, OrderStore, PaymentStore, ExtraPaymentStore, OutboxStore,
            LedgerStore, CustomerStore, SharedStateStore, RiskStore, TicketStore, SupplyStore, ApiStore,
            ReportStore, DistributorStore, ReconcileStore, Protocol):
    """Everything: what the composition root builds (storage/sqlite.py SqliteStore, storage/postgres.py
    PostgresStore)."""
