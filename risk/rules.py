"""Risk rules as data: a TOML file (shipped defaults in default_rules.toml), validated strictly.

A file with a typo is refused with its line (TOML syntax) or the rule and field (meaning); the caller keeps
the last good rules.  Thresholds are positive integers (0 allowed for `disputes`: no dispute allowed); windows
are `30s`, `10m`, `1h`, `1d`.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Action = Literal["deny", "review", "challenge"]
Stage = Literal["reserve", "payment", "paid"]
Dimension = Literal["user", "ip", "fp", "sku", "global"]
Kind = Literal["velocity", "amount", "distinct", "new_user", "refund_ratio", "failed_payments", "disputes"]
SEVERITY: dict[str, int] = {"allow": 0, "challenge": 1, "review": 2, "deny": 3}
DEFAULT_STAGE: dict[str, Stage] = {"velocity": "reserve", "amount": "reserve", "distinct": "payment",
                                   "failed_payments": "payment",
                                   "new_user": "payment", "refund_ratio": "payment", "disputes": "payment"}
#: kinds whose threshold may be 0 (a count of things that should never have happened)
ZERO_THRESHOLD: frozenset[str] = frozenset({"disputes"})
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class RulesError(ValueError):
    """A rule file or a rule change that cannot be used; the message says where and why."""


def window_seconds(text: str) -> int:
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f"window {text!r} must look like 30s, 10m, 1h or 1d")
    return int(m.group(1)) * _UNIT[m.group(2)]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    #: whose events are counted (velocity, amount) or grouped (distinct)
    dimension: Dimension = "user"
    #: distinct: what is counted per dimension (users per IP, users per fingerprint, fingerprints per user)
    of: Literal["user", "ip", "fp"] | None = None
    window: str = "1h"
    #: velocity/distinct/failed_payments: a count; amount: minor units of `currency`; new_user: minutes;
    #: refund_ratio: percent; disputes: disputed orders allowed (0: none)
    threshold: int = Field(ge=0)
    action: Action = "deny"
    score: int = Field(50, ge=0, le=100)
    stage: Stage | None = None
    currency: str = ""
    #: new_user: applies to orders of at least this amount per currency (empty: every order)
    min_amount: dict[str, int] = Field(default_factory=dict)
    #: refund_ratio: judged only after this many paid orders
    min_orders: int = Field(3, gt=0)
    #: only these SKU slugs (empty: all)
    skus: list[str] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        window_seconds(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.kind == "distinct" and (self.of is None or self.of == self.dimension):
            raise ValueError("a distinct rule needs `of` (user, ip or fp) different from its dimension")
        if self.kind == "amount" and not self.currency:
            raise ValueError("an amount rule needs a currency (amounts are minor units of one currency)")
        if self.threshold == 0 and self.kind not in ZERO_THRESHOLD:
            raise ValueError("threshold must be a positive whole number (0 only for a disputes rule)")
        if self.kind == "refund_ratio" and self.threshold > 100:
            raise ValueError("refund_ratio threshold is a percentage (1-100)")
        if any(v <= 0 for v in self.min_amount.values()):
            raise ValueError("min_amount values must be positive")
        return self

    @property
    def window_s(self) -> int:
        return window_seconds(self.window)

    @property
    def run_at(self) -> Stage:
        return self.stage or DEFAULT_STAGE[self.kind]


class Lists(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    block_users: list[str] = Field(default_factory=list)  # channel:user_id
    allow_users: list[str] = Field(default_factory=list)
    block_ips: list[str] = Field(default_factory=list)  # addresses or CIDR networks, IPv4 and IPv6
    allow_ips: list[str] = Field(default_factory=list)
    block_fps: list[str] = Field(default_factory=list)  # keyed fingerprints as logged
    allow_fps: list[str] = Field(default_factory=list)

    @field_validator("block_ips", "allow_ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for v in values:
            ipaddress.ip_network(v, strict=False)  # raises ValueError naming the bad entry
        return values


class RuleBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a challenge asks the customer to wait this long before the order may continue
    challenge_cooldown_s: int = Field(60, gt=0, le=86_400)
    #: chat flood control: messages per user (burst, then per minute)
    chat_burst: int = Field(20, gt=0)
    chat_per_minute: int = Field(60, gt=0)
    rules: dict[str, Rule] = Field(default_factory=dict)
    lists: Lists = Field(default_factory=Lists)

    @field_validator("rules")
    @classmethod
    def _ids(cls, rules: dict[str, Rule]) -> dict[str, Rule]:
        for rule_id in rules:
            if not RULE_ID.match(rule_id):
                raise ValueError(f"rule id {rule_id!r} must be lower-case letters, digits and _")
        return rules


def parse_rules(text: str) -> RuleBook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"risk rules: {exc}") from None  # the message carries line and column
    try:
        return RuleBook.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RulesError(f"risk rules: {where}: {first['msg']}") from None


def default_rules_text() -> str:
    return resources.files("risk").joinpath("default_rules.toml").read_text(encoding="utf-8")


def with_threshold(text: str, rule_id: str, threshold: int) -> str:
    """The rules text with one rule's threshold changed (validated; raises RulesError)."""
    book = parse_rules(text)
    if rule_id not in book.rules:
        raise RulesError(f"risk rules: no rule {rule_id!r}")
    if threshold < 0 or (threshold == 0 and book.rules[rule_id].kind not in ZERO_THRESHOLD):
        raise RulesError("risk rules: a threshold must be a positive whole number (0 only for a disputes rule)")
    pattern = re.compile(rf"(^\[rules\.{re.escape(rule_id)}\][ \t]*$(?:(?!^\[).)*?^threshold[ \t]*=[ \t]*)(\d+)",
                         re.S | re.M)
    changed, n = pattern.subn(lambda m: f"{m.group(1)}{threshold}", text, count=1)
    if n != 1:
        raise RulesError(f"risk rules: rule {rule_id!r} has no threshold line to change")
    parse_rules(changed)
    return changed


@dataclass(frozen=True, slots=True)
class RuleSummary:
    rule_id: str
    kind: str
    dimension: str
    of: str | None
    window: str
    threshold: int
    action: str
    enabled: bool


def summaries(book: RuleBook) -> list[RuleSummary]:
    return [RuleSummary(rid, r.kind, r.dimension, r.of, r.window, r.threshold, r.action, r.enabled)
            for rid, r in book.rules.items()]
