"""The layering rules of DESIGN.md ("Layout") as an executable import contract, read with ast from the source.

- handlers/ may import storage's plain data (storage.records, storage.records_supply,
  storage.events) but never the Store protocols,
  storage errors or a backend: conversations and adapters talk to fulfillment/risk services;
- nothing in fulfillment/, risk/, storage/, handlers/ or locales/ imports bot/ (only the composition root
  knows everything);
- fulfillment/ and risk/ never import handlers/ (the shop core knows no chat);
- storage/ never imports fulfillment/, risk/ or handlers/ (SQL knows no business rules).

Every import counts: at module level, inside functions, under `if TYPE_CHECKING:`, relative ones, and
`importlib.import_module("…")` / `__import__("…")` with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "fulfillment", "risk", "storage", "locales")
#: storage modules that hold plain data only (records, typed events): importable from anywhere
STORAGE_PLAIN_DATA = ("storage.records", "storage.records_supply", "storage.events")


@dataclass(frozen=True, order=True)
class Violation:
    path: str  # relative to the tree's root, with /
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported} ({self.rule})"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _forbidden(importer: str, imported: str) -> str | None:
    """The rule `importer` (a dotted module name) breaks by importing `imported`, or None."""
    top = importer.split(".", 1)[0]
    if top != "bot" and top in PACKAGES and _within(imported, "bot"):
        return f"{top}/ must not import bot/"
    if top in ("fulfillment", "risk") and _within(imported, "handlers"):
        return f"{top}/ must not import handlers/"
    if top == "storage" and any(_within(imported, p) for p in ("fulfillment", "risk", "handlers")):
        return "storage/ must not import fulfillment/, risk/ or handlers/"
    if (top == "handlers" and _within(imported, "storage") and imported != "storage"
            and not any(_within(imported, plain) for plain in STORAGE_PLAIN_DATA)):
        return "handlers/ may import storage record types only (no Store protocol, storage errors or backend)"
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything a module imports; `from a import b` yields a and a.b (b may be a module)."""
    importer = _module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, path.name == "__init__.py", node)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path) -> list[Violation]:
    """Every import under `root`'s packages that breaks the contract, sorted by file and line."""
    out: set[Violation] = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = _module_name(root, path)
            for line, imported in imports_of(root, path):
                rule = _forbidden(importer, imported)
                if rule is not None:
                    out.add(Violation(path.relative_to(root).as_posix(), line, imported, rule))
    return sorted(_drop_parents(out))


def _drop_parents(found: set[Violation]) -> set[Violation]:
    """`from bot.settings import Settings` breaks a rule as bot.settings and as bot.settings.Settings: keep one."""
    return {v for v in found if not any(o.path == v.path and o.line == v.line
                                        and v.imported.startswith(o.imported + ".") for o in found)}


def test_source_tree_keeps_the_import_contract() -> None:
    found = violations(ROOT)
    assert not found, "import contract broken:\n" + "\n".join(map(str, found))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return root


def test_checker_reports_each_kind_of_violating_import(tmp_path: Path) -> None:
    # given a small tree that breaks every rule once, in the different spellings of an import
    root = _tree(tmp_path, {
        "handlers/__init__.py": "",
        "handlers/shop.py": "from storage.protocol import Store\n",
        "handlers/errors.py": "from storage import errors\n",
        "handlers/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import storage.sqlite\n",
        "handlers/wechat/__init__.py": "",
        "handlers/wechat/late.py": "def f():\n    import importlib\n"
                                   "    return importlib.import_module('storage.postgres')\n",
        "fulfillment/__init__.py": "",
        "fulfillment/orders.py": "from bot.settings import Settings\nfrom handlers.types import Reply\n",
        "risk/engine.py": "from ..handlers import router\n",
        "storage/sqlite.py": "import fulfillment.orders\n",
        "locales/__init__.py": "import bot\n",
    })
    # when the checker reads it
    found = {(v.path, v.imported) for v in violations(root)}
    # then every broken rule is reported, each import once
    assert found == {
        ("handlers/shop.py", "storage.protocol"),
        ("handlers/errors.py", "storage.errors"),
        ("handlers/typed.py", "storage.sqlite"),
        ("handlers/wechat/late.py", "storage.postgres"),
        ("fulfillment/orders.py", "bot.settings"),
        ("fulfillment/orders.py", "handlers.types"),
        ("risk/engine.py", "handlers"),
        ("storage/sqlite.py", "fulfillment.orders"),
        ("locales/__init__.py", "bot"),
    }


@pytest.mark.parametrize("text", [
    "from storage.records import Order, OrderState\n",
    "from storage.events import OrderEvent\n",
    "import storage.records\n",
    "from fulfillment.orders import OrderService\n",
    "from risk.engine import RiskEngine\n",
    "from handlers.types import Reply\n",
])
def test_checker_accepts_what_handlers_may_import(tmp_path: Path, text: str) -> None:
    root = _tree(tmp_path, {"handlers/__init__.py": "", "handlers/ok.py": text})
    assert violations(root) == []


def test_bot_may_import_everything(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"bot/composition.py": "from storage.protocol import Store\nimport handlers.router\n"})
    assert violations(root) == []
