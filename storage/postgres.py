"""PostgreSQL Store: the backend composed from its per-concern mixins (one module each) over PostgresBase."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.postgres_api import PgApiVerbs
from storage.postgres_base import PostgresBase
from storage.postgres_catalog import PgCatalog
from storage.postgres_customers import PgCustomers
from storage.postgres_distributors import PgDistributors
from storage.postgres_reconcile import PgReconciliation
from storage.postgres_reports import PgReports
from storage.postgres_risk import PgRisk
from storage.postgres_sales import PgSales
from storage.postgres_shared import PgSharedState
from storage.postgres_supply import PgSupply
from storage.postgres_tickets import PgTickets
from storage.postgres_vault import PgVault
from storage.postgres_wechatpay import PgExtraPayments


class PostgresStore(PgCatalog, PgVault, PgSales, PgCustomers, PgSharedState, PgRisk, PgApiVerbs, PgReports,
                    PgDistributors, PostgresBase, PgTickets, PgExtraPayments, PgSupply, PgReconciliation):
    """The Store protocol (storage/protocol.py) on PostgreSQL. PostgresBase comes before PgTickets and
    PgExtraPayments, whose `pool` is a placeholder for the base's."""


if TYPE_CHECKING:  # mypy checks here that the composed class implements every concern's protocol
    from storage.protocol import Store

    def _implements_store(store: PostgresStore) -> Store:
        return store
