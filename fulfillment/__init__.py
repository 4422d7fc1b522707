"""Catalogue, code vault, orders, payments, delivery outbox and ledger."""
