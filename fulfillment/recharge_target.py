"""What a direct-recharge SKU credits: the customer's target (a mainland mobile number or an account id), checked
and normalised before any order exists, so a typo never reaches a supplier.

A SKU's `target_rule` (storage.records.Sku) is None for a code SKU, `"mobile"` for a mainland China mobile number,
or `"re:PATTERN"` for an account / game id that must match PATTERN as a whole.

Mobile numbers: 11 digits starting with 1, after removing spaces, dashes, dots and brackets and a leading `+86`,
`0086` or `86` (full-width digits typed on a Chinese keyboard are read as digits). The first three digits (four
for 134x) name the operator; the table below follows the Mobile phones section of Wikipedia's "Telephone numbers
in China" (https://en.wikipedia.org/wiki/Telephone_numbers_in_China; read 2026-12 through its mirror
https://wikimili.com/en/Telephone_numbers_in_China) and the MIIT's 2019 allocation of 190/197/196/192 to China
Telecom, China Mobile, China Unicom and China Broadnet (reported e.g. at http://vdgb.cn/wenda/231670.html). The
virtual-operator blocks (170/171 and 162/165/167) are leased to MVNOs on the three networks; they are shown as
"virtual operator". 1349 (satellite), 140-144 (13-digit IoT numbers) and 174 (satellite and
emergency) are not phone lines a supplier tops up and are refused. Numbers keep their operator's prefix when
ported, so the carrier shown is the number's original operator: a hint for the customer, not a routing fact.

Pattern rules: the merchant's pattern is compiled once when set (`check_rule`); a pattern that does not compile,
is longer than MAX_PATTERN, or nests unbounded repeats (catastrophic backtracking on a crafted id) is refused
there. A customer's id is stripped, limited to MAX_TARGET characters and must match the whole pattern.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from functools import lru_cache
from typing import Any

MAX_TARGET = 64  # characters of an account id (and of anything typed as a target)
MAX_PATTERN = 200
MOBILE = "mobile"
PATTERN_PREFIX = "re:"


class BadTarget(ValueError):
    """A target or a rule refused; `reason` names why (locale key `recharge.bad.<reason>`)."""

    REASONS = ("empty", "too_long", "not_digits", "wrong_length", "unknown_prefix", "no_match", "bad_rule")

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in self.REASONS, reason
        super().__init__(detail or reason)
        self.reason = reason


class Carrier(StrEnum):
    CHINA_MOBILE = "china_mobile"
    CHINA_UNICOM = "china_unicom"
    CHINA_TELECOM = "china_telecom"
    CHINA_BROADNET = "china_broadnet"
    VIRTUAL = "virtual"  # a virtual operator (MVNO) on one of the networks above


def _table() -> dict[str, Carrier]:
    groups = {
        Carrier.CHINA_MOBILE: "135 136 137 138 139 147 148 150 151 152 157 158 159 172 178 182 183 184 187 188 "
                              "195 197 198",
        Carrier.CHINA_UNICOM: "130 131 132 145 146 155 156 166 175 176 185 186 196",
        Carrier.CHINA_TELECOM: "133 149 153 173 177 180 181 189 190 191 193 199",
        Carrier.CHINA_BROADNET: "192",
        Carrier.VIRTUAL: "162 165 167 170 171",
    }
    table = {prefix: carrier for carrier, prefixes in groups.items() for prefix in prefixes.split()}
    table |= {f"134{d}": Carrier.CHINA_MOBILE for d in "012345678"}  # 1349 is satellite
    return table


#: a number's first three digits (four for 134x) → its operator
PREFIXES: dict[str, Carrier] = _table()

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015.()（）]+")  # spaces, hyphens and dashes, dots, brackets


def normalise_mobile(text: str) -> str:
    """The 11 digits of a mainland mobile number, or BadTarget."""
    cleaned = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if not cleaned:
        raise BadTarget("empty")
    if len(cleaned) > MAX_TARGET:
        raise BadTarget("too_long")
    for country in ("+86", "0086"):
        if cleaned.startswith(country):
            cleaned = cleaned[len(country):]
            break
    else:
        if len(cleaned) == 13 and cleaned.startswith("861"):
            cleaned = cleaned[2:]
    if not cleaned.isascii() or not cleaned.isdigit():
        raise BadTarget("not_digits")
    if len(cleaned) != 11:
        raise BadTarget("wrong_length")
    if carrier_of(cleaned) is None:
        raise BadTarget("unknown_prefix")
    return cleaned


def carrier_of(number: str) -> Carrier | None:
    """The operator of a normalised 11-digit number by its prefix; None: not a mobile prefix we sell to."""
    if len(number) != 11 or not number.isascii() or not number.isdigit():
        return None
    return PREFIXES.get(number[:3]) or PREFIXES.get(number[:4])


def _nested_unbounded(items: Any, inside: bool = False) -> bool:
    """Whether a parsed pattern has an unbounded repeat or an alternation inside an unbounded repeat ((a+)+, (a*)*,
    (a|aa)+…): the shapes whose backtracking explodes on a long non-matching id."""
    from re import _constants as c  # type: ignore[attr-defined]

    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)}
    for op, arg in items:
        children: list[Any] = []
        nested = inside
        if op in repeats:
            unbounded = arg[1] == c.MAXREPEAT or arg[1] > MAX_TARGET
            if inside and unbounded:
                return True
            children, nested = [arg[2]], inside or unbounded
        elif op == c.BRANCH:
            if inside:
                return True
            children = list(arg[1])
        elif op in (c.SUBPATTERN, c.ASSERT, c.ASSERT_NOT):
            children = [arg[-1]]
        elif op == getattr(c, "ATOMIC_GROUP", None):
            children = [arg]
        if any(_nested_unbounded(child, nested) for child in children):
            return True
    return False


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    from re import _parser  # type: ignore[attr-defined]

    if not pattern or len(pattern) > MAX_PATTERN:
        raise BadTarget("bad_rule", f"a target pattern has 1-{MAX_PATTERN} characters")
    try:
        parsed = _parser.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadTarget("bad_rule", f"target pattern does not compile: {exc}") from None
    if _nested_unbounded(list(parsed)):
        raise BadTarget("bad_rule", "target pattern nests repeats (slow on long input); simplify it")
    return compiled


def check_rule(rule: str | None) -> str | None:
    """A SKU's target rule as a merchant sets it: None/"" (codes), "mobile" or "re:PATTERN"; BadTarget otherwise."""
    if rule is None or rule.strip() in ("", "none"):
        return None
    rule = rule.strip()
    if rule == MOBILE:
        return rule
    if rule.startswith(PATTERN_PREFIX):
        _compiled(rule[len(PATTERN_PREFIX):])
        return rule
    raise BadTarget("bad_rule", 'a target rule is "mobile" or "re:PATTERN"')


def check_target(rule: str, text: str) -> str:
    """The customer's target normalised under the SKU's rule; BadTarget (with its reason) when it does not fit."""
    if rule == MOBILE:
        return normalise_mobile(text)
    if not rule.startswith(PATTERN_PREFIX):
        raise BadTarget("bad_rule", f"unknown target rule {rule[:20]!r}")
    compiled = _compiled(rule[len(PATTERN_PREFIX):])
    value = unicodedata.normalize("NFKC", text).strip()
    if not value:
        raise BadTarget("empty")
    if len(value) > MAX_TARGET:
        raise BadTarget("too_long")
    if any(unicodedata.category(ch).startswith("C") for ch in value) or compiled.fullmatch(value) is None:
        raise BadTarget("no_match")
    return value


def masked(target: str) -> str:
    """A target as order lists show it: a mobile number as 138****8000, an id keeping its ends."""
    if len(target) == 11 and target.isdigit():
        return f"{target[:3]}****{target[7:]}"
    if len(target) <= 4:
        return target[0] + "*" * (len(target) - 1)
    keep = max(2, len(target) // 4)
    return target[:keep] + "*" * (len(target) - 2 * keep) + target[-keep:]


def order_target(rule: str | None, raw: str | None) -> str | None:
    """What checkout stores as an order's target: None for a code SKU, else the normalised target; InvalidTarget
    (a shop error the customer reads) when a recharge SKU has none or a bad one."""
    from fulfillment.errors import InvalidTarget

    if rule is None:
        return None
    try:
        return check_target(rule, raw or "")
    except BadTarget as exc:
        raise InvalidTarget(f"target refused: {exc}", reason=exc.reason) from None
