"""The terminal channel of the offline demo shop."""
