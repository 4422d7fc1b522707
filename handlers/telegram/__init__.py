"""Telegram adapter: python-telegram-bot updates in, channel-neutral conversations, replies out."""
