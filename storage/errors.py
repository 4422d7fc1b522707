"""Storage-level outcomes that the domain layer turns into its own errors."""


class StoreError(Exception):
    """Base class; messages carry ids only, never secrets."""


class InsufficientStock(StoreError):
    pass


class PurchaseLimitReached(StoreError):
    pass


class UnknownRecord(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass
