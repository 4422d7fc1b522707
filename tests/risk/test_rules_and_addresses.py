"""Rule files (shipped defaults, typos refused with the line, thresholds validated) and client addresses."""

from __future__ import annotations

import ipaddress

import pytest

from risk.netaddr import client_ip, in_networks, ip_key, parse_ip, parse_networks
from risk.rules import RulesError, default_rules_text, parse_rules, with_threshold


def test_shipped_rules_load_and_cover_the_required_kinds():
    book = parse_rules(default_rules_text())
    kinds = {(r.kind, r.dimension, r.of) for r in book.rules.values()}
    assert ("velocity", "user", None) in kinds
    assert ("amount", "user", None) in kinds
    assert ("distinct", "ip", "user") in kinds
    assert ("distinct", "fp", "user") in kinds
    assert ("velocity", "sku", None) in kinds
    assert {"new_user", "refund_ratio"} <= {r.kind for r in book.rules.values()}
    windows = {r.window_s for r in book.rules.values() if r.kind == "velocity" and r.dimension == "user"}
    assert windows == {3600, 86_400}  # per hour and per day


def test_a_syntax_typo_is_refused_with_its_line():
    text = default_rules_text().replace('[rules.user_orders_day]', '[rules.user_orders_day', 1)
    line = text.splitlines().index("[rules.user_orders_day") + 1
    with pytest.raises(RulesError, match=f"line {line}"):
        parse_rules(text)


@pytest.mark.parametrize(("bad", "where"), [
    ("threshold = 0", "threshold"),
    ("threshold = -5", "threshold"),
    ('threshold = "ten"', "threshold"),
    ("treshold = 5", "treshold"),
    ('window = "1 week"', "window"),
])
def test_bad_rule_values_are_refused_naming_the_rule(bad, where):
    text = f'[rules.r1]\nkind = "velocity"\nthreshold = 3\n{bad}\n' if "threshold =" not in bad else \
        f'[rules.r1]\nkind = "velocity"\n{bad}\n'
    with pytest.raises(RulesError, match=rf"rules\.r1.*{where}|{where}"):
        parse_rules(text)


def test_incoherent_rules_are_refused():
    with pytest.raises(RulesError, match="of"):
        parse_rules('[rules.x]\nkind = "distinct"\ndimension = "ip"\nthreshold = 3\n')
    with pytest.raises(RulesError, match="currency"):
        parse_rules('[rules.x]\nkind = "amount"\nthreshold = 3\n')
    with pytest.raises(RulesError, match="block_ips"):
        parse_rules('[lists]\nblock_ips = ["10.0.0.300"]\n')


def test_with_threshold_changes_exactly_one_rule():
    text = with_threshold(default_rules_text(), "users_per_ip_day", 4)
    book, before = parse_rules(text), parse_rules(default_rules_text())
    assert book.rules["users_per_ip_day"].threshold == 4
    changed = [rid for rid in book.rules if book.rules[rid] != before.rules[rid]]
    assert changed == ["users_per_ip_day"]
    for bad in (0, -1):
        with pytest.raises(RulesError, match="positive"):
            with_threshold(default_rules_text(), "users_per_ip_day", bad)
    with pytest.raises(RulesError, match="no rule"):
        with_threshold(default_rules_text(), "nope", 3)


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "abc", "1.2.3.4/24", "::g", "x" * 100])
def test_malformed_addresses_are_refused(bad):
    with pytest.raises(ValueError, match="IP|address|does not appear"):
        parse_ip(bad)


def test_ipv6_counts_per_64_and_mapped_ipv4_is_ipv4():
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert ip_key(" 198.51.100.1 ") == "198.51.100.1"
    nets = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
    assert in_networks("10.9.8.7", nets)
    assert in_networks("2001:db8:ffff::1", nets)
    assert not in_networks("11.0.0.1", nets)
    assert not in_networks("not-an-ip", nets)


def test_forwarded_for_is_believed_only_from_trusted_proxies():
    proxies = parse_networks(["10.0.0.0/8"])
    # a customer talking to us directly cannot choose their address by sending the header
    assert client_ip("203.0.113.9", "1.1.1.1", proxies) == "203.0.113.9"
    # through our proxy: the right-most address our proxy did not add
    assert client_ip("10.0.0.2", "1.1.1.1, 198.51.100.4", proxies) == "198.51.100.4"
    assert client_ip("10.0.0.2", "198.51.100.4, 10.0.0.3", proxies) == "198.51.100.4"
    # a spoofed left-most entry is never reached; garbage stops the walk at the last good hop
    assert client_ip("10.0.0.2", "6.6.6.6, garbage, 198.51.100.4", proxies) == "198.51.100.4"
    assert client_ip("10.0.0.2", "garbage", proxies) == "10.0.0.2"
    assert client_ip("bogus", "1.1.1.1", proxies) == ""
    assert isinstance(parse_ip("::1"), ipaddress.IPv6Address)


def test_a_disputes_rule_allows_threshold_zero_and_refuses_negative():
    book = parse_rules(default_rules_text())
    chargebacks = book.rules["chargebacks"]
    assert (chargebacks.kind, chargebacks.threshold, chargebacks.action, chargebacks.run_at) == (
        "disputes", 0, "review", "payment")
    assert parse_rules('[rules.d]\nkind = "disputes"\nthreshold = 2\naction = "deny"\n').rules["d"].threshold == 2
    with pytest.raises(RulesError, match=r"rules\.d\.threshold"):
        parse_rules('[rules.d]\nkind = "disputes"\nthreshold = -1\n')
    with pytest.raises(RulesError, match="0 only for a disputes rule"):
        parse_rules('[rules.v]\nkind = "velocity"\nthreshold = 0\n')
    assert parse_rules(with_threshold(default_rules_text(), "chargebacks", 3)).rules["chargebacks"].threshold == 3
    changed = with_threshold(with_threshold(default_rules_text(), "chargebacks", 3), "chargebacks", 0)
    assert parse_rules(changed).rules["chargebacks"].threshold == 0
    with pytest.raises(RulesError, match="positive"):
        with_threshold(default_rules_text(), "chargebacks", -1)
