"""The order API channel (issue 15): signed HTTP requests of other storefronts, answered in JSON. Framework-free:
bot/api.py turns Starlette requests into `ApiRequest`s; the shop verbs are in fulfillment/api_*.py."""
