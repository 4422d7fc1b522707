"""Composition root, settings, CLI, HTTP app and background jobs of kamibot."""
