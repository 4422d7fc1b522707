"""Upstream suppliers behind one `Supplier` protocol (protocol.py), with adapters for real protocols
(kashangwl.py, acgfaka.py), their errors (errors.py), HTTP policy (transport.py) and a circuit breaker (breaker.py).
Nothing here touches the database: recording procurements is the caller's job, before each call."""
