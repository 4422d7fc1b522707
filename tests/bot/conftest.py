"""Bot tests reuse the real SQLite shop fixture."""

from tests.fulfillment.conftest import shop  # noqa: F401 - re-exported fixture
