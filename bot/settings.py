"""The one settings class: environment variables KAMIBOT_* (nested with __) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.api_settings import ApiSettings


class TelegramSettings(BaseModel):
    """KAMIBOT_TELEGRAM__*: the Telegram channel is on when a token is set."""

    token: SecretStr = SecretStr("")
    #: another Bot API server (tests, a self-hosted server); the token is appended
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    admin_ids: list[int] = Field(default_factory=list)
    mode: Literal["polling", "webhook"] = "polling"
    #: checked against X-Telegram-Bot-Api-Secret-Token on every webhook request (1-256 chars A-Z a-z 0-9 _ -)
    webhook_secret: SecretStr = SecretStr("")
    notify_paid_orders: bool = True
    #: per-chat pacing (Telegram allows about one message per second per chat, short bursts tolerated) and
    #: overall (about 30/s): a chat's first `per_chat_burst` messages go at once, then one per interval
    per_chat_interval_s: float = Field(1.0, ge=0)
    per_chat_burst: int = Field(4, ge=1, le=20)
    global_per_second: float = Field(30.0, gt=0)
    #: send /broadcast with allow_paid_broadcast: up to 1000 messages/s instead of a share of the 30/s, each
    #: message paid with 0.1 Star from the bot's balance (https://core.telegram.org/bots/api#sendmessage)
    allow_paid_broadcast: bool = False
    #: the Stars recovery job (getStarTransactions): how often (0 = off), and how old a transaction must be
    #: before the job takes it up (younger ones are left to their live update)
    stars_recovery_every_s: float = Field(60.0, ge=0)
    stars_recovery_grace_s: float = Field(30.0, ge=0)

    @property
    def enabled(self) -> bool:
        return bool(self.token.get_secret_value())


class WeChatSettings(BaseModel):
    """KAMIBOT_WECHAT__*: the WeChat Official Account channel is on when app_id and token are set."""

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    #: the callback Token configured in the Official Account console (signs every callback)
    token: SecretStr = SecretStr("")
    #: 43 characters; empty = plaintext mode only (safe/compatible mode needs it)
    encoding_aes_key: SecretStr = SecretStr("")
    admin_openids: list[str] = Field(default_factory=list)
    #: another API server (tests point it at a fake on 127.0.0.1)
    api_base_url: str = "https://api.weixin.qq.com"

    @property
    def enabled(self) -> bool:
        return bool(self.app_id and self.token.get_secret_value())


class WeChatPaySettings(BaseModel):
    """KAMIBOT_WECHATPAY__*: WeChat Pay APIv3 (JSAPI page and Native QR); on when mchid, keys and URLs are set."""

    mchid: str = ""
    #: the Official Account's AppID the payments are made under
    app_id: str = ""
    #: the 32-byte APIv3 key (decrypts notifications)
    api_v3_key: SecretStr = SecretStr("")
    merchant_serial_no: str = ""
    #: PEM RSA private key of the merchant API certificate (apiclient_key.pem)
    merchant_key_file: Path | None = None
    #: "WeChat Pay public key" mode: PUB_KEY_ID_… and its PEM file
    public_key_id: str = ""
    public_key_file: Path | None = None
    #: platform-certificate mode: PEM certificate files (both modes may be set during a switch)
    platform_cert_files: list[Path] = Field(default_factory=list)
    api_base_url: str = "https://api.mch.weixin.qq.com"
    #: where WeChat Pay posts notifications, e.g. https://shop.example.com/pay/wechat/notify
    notify_url: str = ""
    #: the public base URL of this server, for pay links, e.g. https://shop.example.com
    public_url: str = ""
    #: signs pay links; empty = derived from the APIv3 key (HMAC, one-way)
    link_secret: SecretStr = SecretStr("")
    link_ttl_seconds: int = Field(1800, ge=60, le=86_400)
    reconcile_every_seconds: float = Field(60.0, gt=0)

    @field_validator("api_v3_key")
    @classmethod
    def _key_length(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value().encode()) != 32:
            raise ValueError("the APIv3 key must be 32 bytes")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.mchid and self.app_id and self.api_v3_key.get_secret_value() and self.merchant_serial_no
                    and self.merchant_key_file and self.notify_url and self.public_url
                    and ((self.public_key_id and self.public_key_file) or self.platform_cert_files))


class RiskSettings(BaseModel):
    """KAMIBOT_RISK__*: the rule engine over every checkout; limits shared through Redis when redis_url is set."""

    enabled: bool = True
    #: a rules TOML used until a merchant saves rules (the database copy wins); empty = shipped defaults
    rules_file: Path | None = None
    #: Redis unreachable or slower than check_timeout_ms: keep counting in-process (open) or refuse (closed)
    redis_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    check_timeout_ms: int = Field(300, ge=10, le=5_000)
    #: proxies whose X-Forwarded-For is believed (addresses or CIDR); nobody else's
    trusted_proxies: list[str] = Field(default_factory=list)


class AfterSalesSettings(BaseModel):
    """KAMIBOT_AFTERSALES__*: the after-sales tickets."""

    #: an open (unanswered) ticket older than this reminds the merchants, once per such period
    sla_minutes: int = Field(30, ge=1, le=10_080)
    sla_check_seconds: float = Field(60.0, gt=0)


class JobSettings(BaseModel):
    """KAMIBOT_JOBS__*: how often the core background jobs tick (every instance runs them; each does its work
    once across instances, bot/jobs.py)."""

    delivery_every_s: float = Field(0.2, gt=0, le=60)
    expire_every_s: float = Field(10.0, gt=0, le=3_600)
    recover_every_s: float = Field(30.0, gt=0, le=3_600)


class SupplySettings(BaseModel):
    """KAMIBOT_SUPPLY__*: paid orders that wait on a supplier (on demand after payment, direct recharges)."""

    #: a recharge whose outcome is still unknown this long opens one merchant ticket (it is never refunded while
    #: unknown, and still queried)
    recharge_unknown_ticket_after_minutes: int = Field(30, ge=1, le=10_080)
    #: a paid on-demand order with no offer to buy now (breakers open, catalogues unreadable) is retried this many
    #: times (backoff 2 s, 4 s, 8 s, ...) before it fails and is refunded
    procure_retries: int = Field(3, ge=0, le=20)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAMIBOT_", env_nested_delimiter="__", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("data")
    #: SQLAlchemy-style URL; empty = sqlite file kamibot.db in data_dir
    database_url: str = ""
    #: PostgreSQL connections this process may open at most (several instances share the server's max_connections)
    database_pool_size: int = Field(20, ge=2, le=500)
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
    support_contact: str = ""
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    wechatpay: WeChatPaySettings = Field(default_factory=WeChatPaySettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    aftersales: AfterSalesSettings = Field(default_factory=AfterSalesSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    supply: SupplySettings = Field(default_factory=SupplySettings)
    #: KAMIBOT_METRICS_TOKEN: GET /metrics requires it as a bearer token; empty = open (a shop on 127.0.0.1)
    metrics_token: SecretStr = SecretStr("")
    #: the public base URL of this server for dashboard links (e.g. https://shop.example.com); empty = the WeChat
    #: Pay public URL, or http://HTTP_HOST:HTTP_PORT
    public_url: str = ""
    #: signs dashboard links (bot/dashboard.py); empty = derived from the vault's HMAC key (one-way)
    dashboard_secret: SecretStr = SecretStr("")
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
