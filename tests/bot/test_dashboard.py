"""The dashboard page in a real browser: headless Chromium from the distribution's packages (installed here with
apt-get when missing) loads GET /dashboard from the real route over a seeded ledger on both backends, and the
figures in its DOM equal the report module's; the page loads nothing from outside; an expired, tampered or
incomplete link gets the 403 page."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import shutil
import subprocess
import tempfile
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from bot.dashboard import DashboardLinks, DashboardPage, dashboard_routes
from fulfillment.money_report import MoneyReports, portrait
from fulfillment.report_charts import period_grouping
from locales import Translator
from tests.fakes.loopback import free_port, serve, shut
from tests.storage.test_reports_conformance import seed

#: the first test of a fresh machine installs Chromium with apt-get inside its (session) fixture
pytestmark = pytest.mark.timeout(900)
FIRST, LAST = date(2026, 11, 26), date(2026, 11, 28)
KEY = b"k" * 32


@pytest.fixture(scope="session")
def chromium() -> str:
    """/usr/bin/chromium from Debian's packages; installed once (under a lock: xdist workers share the machine)."""
    found = shutil.which("chromium")
    if found is None:
        with open(Path(tempfile.gettempdir()) / "kamibot-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if shutil.which("chromium") is None:
                install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
                if subprocess.run(install, capture_output=True, check=False, timeout=600).returncode != 0:
                    subprocess.run(["apt-get", "update"], capture_output=True, check=False, timeout=300)
                    subprocess.run(install, capture_output=True, check=True, timeout=600)
        found = shutil.which("chromium")
    assert found is not None, "chromium could not be installed with apt-get"
    return found


async def dump_dom(browser: str, url: str, profile: Path) -> str:
    """The DOM after load, as Chromium serialises it (`--dump-dom`), with a phone-sized window."""
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=390,844", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out.decode("utf-8")


class Dom(HTMLParser):
    """The money tables (table id → group → column → minor units or text), the portrait rows, images, links."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self.portrait: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.viewport = ""
        self.ids: set[str] = set()
        self._table = ""
        self._row: dict[str, str] | None = None
        self._col = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        for attr in ("src", "href"):
            if a.get(attr, "").startswith(("http:", "https:", "//")):
                self.external.append(a[attr])
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = a.get("content", "")
        if tag == "table":
            self._table = a.get("id", "")
            self.tables.setdefault(self._table, {})
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "tr" and "data-group" in a:
            self._row = {}
        if tag == "tr" and "data-key" in a:
            self.portrait.append(a["data-key"])
        if tag == "td" and self._row is not None and "data-col" in a:
            self._col = a["data-col"]
            self._row[self._col] = a.get("data-minor", "")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col in ("group", "currency"):
            self._row[self._col] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.tables[self._table][f"{self._row['group']}|{self._row['currency']}"] = self._row
            self._row = None
        if tag == "td":
            self._col = ""


def expected(report) -> dict[str, dict[str, str]]:
    rows = {f"{r.group}|{r.currency}": r for r in report.rows}
    rows |= {f"total|{t.currency}": t for t in report.totals}
    return {k: {c: str(v) for c, v in r.as_dict().items()} for k, r in rows.items()}


@pytest.fixture
async def served(store):
    await seed(store)
    tr = Translator("en")
    now = [datetime.now(UTC)]
    links = DashboardLinks(KEY, "http://127.0.0.1", clock=lambda: now[0])
    port = free_port()
    links.base = f"http://127.0.0.1:{port}"
    app = Starlette(routes=dashboard_routes(links, DashboardPage(store, tr, "Asia/Shanghai")))
    server = await serve(app, port)
    yield store, links, now
    await shut(*server)


async def test_the_page_in_chromium_shows_the_report_module_figures(served, chromium, tmp_path):
    store, links, _ = served
    dom = Dom()
    dom.feed(await dump_dom(chromium, links.link(FIRST, LAST, "en"), tmp_path / "profile"))
    reports = MoneyReports(store, "Asia/Shanghai")
    assert dom.tables["by-channel"] == expected(await reports.report(FIRST, LAST, "channel"))
    assert dom.tables["by-sku"] == expected(await reports.report(FIRST, LAST, "sku"))
    assert dom.tables["over-time"] == expected(await reports.report(FIRST, LAST, period_grouping(FIRST, LAST)))
    people = await portrait(store, (await reports.report(FIRST, LAST)).since,
                            (await reports.report(FIRST, LAST)).until, timezone="Asia/Shanghai")
    assert "customers" in dom.portrait
    assert [k for k in dom.portrait if k.startswith("cohort.")] == [f"cohort.{c.month}" for c in people.cohorts]
    assert len(dom.images) == 3
    for src in dom.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            assert image.size[0] == 800
    assert dom.external == []
    assert dom.viewport == "width=device-width, initial-scale=1"


async def test_expired_tampered_and_incomplete_links_are_refused(served, chromium, tmp_path):
    _, links, now = served
    good = links.link(FIRST, LAST, "zh_CN")
    query = dict(parse_qsl(urlsplit(good).query))
    base = good.split("?")[0]
    tampered = base + "?" + urlencode({**query, "to": "2026-12-28"})
    incomplete = base + "?" + urlencode({k: v for k, v in query.items() if k != "sig"})
    async with httpx.AsyncClient() as client:
        assert (await client.get(good)).status_code == 200
        for url in (tampered, incomplete):
            refused = await client.get(url)
            assert refused.status_code == 403
            assert "by-sku" not in refused.text
        now[0] += timedelta(minutes=10, seconds=1)
        expired = await client.get(good)
        assert expired.status_code == 403
        assert "链接无效" in expired.text
    dom = Dom()
    dom.feed(await dump_dom(chromium, tampered, tmp_path / "profile"))
    assert "refused" in dom.ids
    assert "by-sku" not in dom.tables
    now[0] -= timedelta(minutes=10, seconds=1)
    assert links.verify(query) == (FIRST, LAST, "zh_CN")
