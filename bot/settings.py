"""The one settings class: environment variables KAMIBOT_* (nested with __) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAMIBOT_", env_nested_delimiter="__", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("data")
    #: SQLAlchemy-style URL; empty = sqlite file kamibot.db in data_dir
    database_url: str = ""
    #: empty = in-process limits and locks (embedded mode)
    redis_url: str = ""
    #: empty = vault.key in data_dir
    vault_key_file: Path | None = None
    reservation_ttl_seconds: int = Field(900, ge=60, le=86_400)
    default_language: str = "zh_CN"
    display_timezone: str = "Asia/Shanghai"
    #: merchants of the console demo and order API (chat channels add their own admin ids)
    merchant_ids: list[str] = Field(default_factory=list)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65_535)
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in ("zh_CN", "en"):
            raise ValueError("default_language must be zh_CN or en")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'kamibot.db').resolve()}"

    @property
    def resolved_key_file(self) -> Path:
        return self.vault_key_file or self.data_dir / "vault.key"
