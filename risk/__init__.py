"""Risk decisions for orders. The rule engine and limiters arrive with the risk issue (#6).

Until then `fulfillment.orders.RiskHook` is the seam and the composition root
wires `AllowAll` into it.
"""
