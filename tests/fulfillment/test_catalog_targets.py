"""Target rules in the catalogue file: a good one is saved with its SKU, a bad one refuses the whole file."""

from __future__ import annotations

import pytest

from fulfillment.errors import BadQuantity, ImportRefused, UnknownSku

HEAD = ('[[category]]\nslug = "phone"\nname_en = "Phone"\nname_zh = "话费"\n'
        '[[pool]]\nslug = "topup"\nname = "top-ups"\n'
        '[[product]]\nslug = "credit"\ncategory = "phone"\nname_en = "Credit"\nname_zh = "话费"\n')


def _sku(slug: str, target: str) -> str:
    return (f'[[sku]]\nslug = "{slug}"\nproduct = "credit"\npool = "topup"\nname_en = "X"\nname_zh = "X"\n'
            f"target = '{target}'\n")


async def test_a_shop_file_sets_target_rules(shop, tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text(HEAD + _sku("credit-10", "mobile") + _sku("game-id", "re:[0-9]{5,12}"), encoding="utf-8")
    await shop.catalog.load_file(path)
    assert (await shop.catalog.find_sku("credit-10")).target_rule == "mobile"
    assert (await shop.catalog.find_sku("game-id")).target_rule == "re:[0-9]{5,12}"
    edited = await shop.catalog.edit_sku("game-id", {"max_qty": 2})  # other edits keep the rule
    assert edited.target_rule == "re:[0-9]{5,12}"
    with pytest.raises(BadQuantity, match="target"):
        await shop.catalog.edit_sku("game-id", {"target": "re:(a*)*"})
    assert (await shop.catalog.find_sku("game-id")).target_rule == "re:[0-9]{5,12}"


@pytest.mark.parametrize(("target", "why"), [("phone", 'a target rule is "mobile" or "re:PATTERN"'),
                                             ("re:([0-9]+)+", "nests repeats"),
                                             ("re:[0-9", "does not compile")])
async def test_a_shop_file_with_a_bad_target_rule_is_refused_whole(shop, tmp_path, target, why):
    path = tmp_path / "shop.toml"
    path.write_text(HEAD + _sku("credit-10", "mobile") + _sku("bad", target), encoding="utf-8")
    with pytest.raises(ImportRefused, match="sku.1.target") as refused:
        await shop.catalog.load_file(path)
    assert why in str(refused.value)
    assert await shop.store.categories() == []
    with pytest.raises(UnknownSku):
        await shop.catalog.find_sku("credit-10")  # not even the good SKU before it
