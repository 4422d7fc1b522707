"""Risk decisions for orders: limiters (`limiters`, `redis_limiter`, `failover`), rules (`rules`,
`default_rules.toml`), the engine (`engine`) and client addresses (`netaddr`).

The order flow reaches it only through `fulfillment.orders.RiskHook`, implemented over the engine by the
composition root (`bot/risk.py`).
"""
