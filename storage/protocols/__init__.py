"""The Store's per-concern protocols; storage/protocol.py composes them into `Store`."""
