"""`kamibot suppliers add|list|test|balance` as a real process against the fake kashangwl supplier on loopback;
the credential is sealed in the database and never printed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from fulfillment.errors import VaultTampered
from fulfillment.suppliers.credentials import open_secret, seal_secret
from fulfillment.vault import KeyRing, Vault
from tests.fakes.supplier_faults import Running
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct

ROOT = Path(__file__).resolve().parents[2]


async def kamibot(data: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
                  ) -> tuple[int, str, str]:
    full = {**os.environ, "KAMIBOT_DATA_DIR": str(data), "PYTHONPATH": str(ROOT), **(env or {})}
    full.pop("KAMIBOT_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=full, cwd=data)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_add_list_test_balance_with_the_secret_sealed(tmp_path):
    fake = FakeKashangwl(balance=12_345)
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=5))
    async with Running(fake.app) as running:
        code, out, err = await kamibot(tmp_path, "suppliers", "add", "kw", "--protocol", "kashangwl", "--url",
                                       running.url, "--account", fake.customer_id, "--products", "41847",
                                       "--read-timeout-ms", "2000", stdin=fake.key.encode() + b"\n")
        assert code == 0, err
        assert "supplier kw saved" in out
        code, out, err = await kamibot(tmp_path, "suppliers", "list")
        assert code == 0, err
        assert "kw: kashangwl" in out
        assert "41847" in out
        assert fake.key not in out + err
        code, out, err = await kamibot(tmp_path, "suppliers", "balance", "kw")
        assert (code, out.strip()) == (0, "kw: balance 123.45 CNY"), err
        code, out, err = await kamibot(tmp_path, "suppliers", "test", "kw")
        assert code == 0, err
        assert "kw: ok, balance 123.45 CNY, 1 products" in out
        assert "41847 Steam 10 USD" in out
        # a wrong key: the supplier refuses, the CLI says so without the key
        code, out, err = await kamibot(tmp_path, "suppliers", "add", "kw", "--protocol", "kashangwl", "--url",
                                       running.url, "--account", fake.customer_id,
                                       env={"KAMIBOT_SUPPLIER_SECRET": "wrong-key-123"})
        assert code == 0, err
        code, out, err = await kamibot(tmp_path, "suppliers", "test", "kw")
        assert code == 1
        assert "supplier.auth_failed" in err
        assert "wrong-key-123" not in out + err
    for f in (p for p in tmp_path.rglob("*") if p.is_file()):  # database, WAL, key file: no plain key
        assert fake.key.encode() not in f.read_bytes(), f"plain key in {f.name}"


async def test_unknown_supplier_and_missing_secret_fail_clearly(tmp_path):
    code, _, err = await kamibot(tmp_path, "suppliers", "balance", "nobody")
    assert code == 2
    assert "no supplier named 'nobody'" in err
    code, _, err = await kamibot(tmp_path, "suppliers", "add", "x", "--protocol", "acgfaka", "--url",
                                 "http://127.0.0.1:9", "--account", "7")
    assert code == 2
    assert "no supplier secret" in err


def test_a_sealed_secret_opens_only_for_its_supplier_and_hides_in_repr():
    vault = Vault(KeyRing.new())
    sealed = seal_secret(vault, "kw", "s3cret-key")
    assert open_secret(vault, "kw", sealed) == "s3cret-key"
    assert "s3cret" not in repr(sealed)
    with pytest.raises(VaultTampered):
        open_secret(vault, "other", sealed)
    with pytest.raises(VaultTampered):
        open_secret(Vault(KeyRing.new()), "kw", sealed)
