"""`GET /dashboard?from=…&to=…&lang=…&exp=…&sig=…`: the merchant's read-only money view (issue 16), reached by a
link that `/dashboard` in chat signs (HMAC-SHA256, valid 10 minutes). Server-rendered HTML that works on a phone:
no script, no external resource (charts are inline data: PNGs, CSS is inline), the same figures as `/report` and
`kamibot report` because it reads the same report module. An expired, tampered or malformed link gets a 403 page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from bot.settings import Settings
from fulfillment.money_report import COLUMNS, MoneyReport, MoneyReports, MoneyRow, Portrait, portrait
from fulfillment.report_charts import Overview, charts, overview
from fulfillment.vault import Vault
from handlers.report_admin import chart_text
from locales import LANGUAGES, Translator
from storage.protocol import Store

log = logging.getLogger("kamibot.dashboard")
LINK_TTL = timedelta(minutes=10)
MAX_DAYS = 366
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"}
CSS = """body{font-family:system-ui,-apple-system,"Noto Sans CJK SC",sans-serif;margin:0;padding:12px;color:#222;
background:#fafafa}h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
p.period{color:#555;margin:.2em 0 1em}.scroll{overflow-x:auto}table{border-collapse:collapse;background:#fff;
font-size:.9em;margin-bottom:.6em}th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}tr.total td{font-weight:bold}img{max-width:100%;height:auto;
background:#fff;border:1px solid #ddd;margin:4px 0}"""


class LinkRefused(ValueError):
    """The dashboard link is expired, tampered with or malformed."""


def dashboard_key(settings: Settings, vault: Vault) -> bytes:
    """KAMIBOT_DASHBOARD_SECRET, or a one-way derivation of the vault's HMAC key (the key file named by the settings;
    a new key file voids old links)."""
    secret = settings.dashboard_secret.get_secret_value()
    if secret:
        return secret.encode()
    return hmac.new(vault.ring.hmac_key, b"kamibot.dashboard.link.v1", hashlib.sha256).digest()


def base_url(settings: Settings) -> str:
    return (settings.public_url or settings.wechatpay.public_url
            or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")


class DashboardLinks:
    """Signs and checks the dashboard's query: the period, the page language and the expiry."""

    def __init__(self, key: bytes, base: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 ttl: timedelta = LINK_TTL) -> None:
        self.key = key
        self.base = base.rstrip("/")
        self.clock = clock
        self.ttl = ttl

    def _sig(self, first: str, last: str, lang: str, exp: str) -> str:
        mac = hmac.new(self.key, f"dashboard\n{first}\n{last}\n{lang}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def link(self, first: date, last: date, lang: str) -> str:
        """Local days [first, last) in `lang`, valid for the link's lifetime from now."""
        exp = str(int((self.clock() + self.ttl).timestamp()))
        query = {"from": first.isoformat(), "to": last.isoformat(), "lang": lang, "exp": exp}
        query["sig"] = self._sig(first.isoformat(), last.isoformat(), lang, exp)
        return f"{self.base}/dashboard?{urlencode(query)}"

    def verify(self, query: Mapping[str, str]) -> tuple[date, date, str]:
        """(first, last, lang) of a genuine, unexpired link; LinkRefused otherwise."""
        try:
            first_s, last_s, lang, exp_s, sig = (query[k] for k in ("from", "to", "lang", "exp", "sig"))
        except KeyError:
            raise LinkRefused("incomplete link") from None
        if not hmac.compare_digest(sig.encode(), self._sig(first_s, last_s, lang, exp_s).encode()):
            raise LinkRefused("bad signature")
        now = int(self.clock().timestamp())
        if not exp_s.isdigit() or int(exp_s) < now:
            raise LinkRefused("expired")
        try:
            first, last = date.fromisoformat(first_s), date.fromisoformat(last_s)
        except ValueError:
            raise LinkRefused("malformed dates") from None
        if lang not in LANGUAGES or not 0 < (last - first).days <= MAX_DAYS:
            raise LinkRefused("malformed period")
        return first, last, lang


class DashboardPage:
    """Renders the page for one verified period from the store's ledger."""

    def __init__(self, store: Store, tr: Translator, timezone: str) -> None:
        self.store = store
        self.tr = tr
        self.timezone = timezone

    async def render(self, first: date, last: date, lang: str) -> str:
        view = await overview(MoneyReports(self.store, self.timezone), first, last)
        people = await portrait(self.store, view.by_sku.since, view.by_sku.until, timezone=self.timezone)
        images = await asyncio.to_thread(charts, view, chart_text(self.tr, lang))
        return page_html(self.tr, lang, view, people, [(c.title, c.png) for c in images])


def _cell(tr: Translator, lang: str, row: MoneyRow, column: str) -> str:
    value = row.as_dict()[column]
    if column in ("group", "currency"):
        return f'<td data-col="{column}">{html.escape(str(value))}</td>'
    shown = str(value) if column == "orders" else tr.money(lang, int(str(value)), row.currency)
    return f'<td data-col="{column}" data-minor="{value}">{html.escape(shown)}</td>'


def money_table(tr: Translator, lang: str, report: MoneyReport, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(tr(lang, f'dashboard.col_{c}'))}</th>" for c in COLUMNS)
    body = [f'<tr data-group="{html.escape(r.group)}">' + "".join(_cell(tr, lang, r, c) for c in COLUMNS) + "</tr>"
            for r in report.rows]
    body += ['<tr class="total" data-group="total">' + "".join(_cell(tr, lang, t, c) for c in COLUMNS) + "</tr>"
             for t in report.totals]
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def portrait_table(tr: Translator, lang: str, p: Portrait) -> str:
    rows: list[tuple[str, str, str]] = [("customers", tr(lang, "dashboard.customers"), str(p.customers)),
                                        ("new", tr(lang, "dashboard.new"), str(p.new)),
                                        ("returning", tr(lang, "dashboard.returning"), str(p.returning)),
                                        ("repeat_bp", tr(lang, "dashboard.repeat"), f"{p.repeat_bp / 100:.2f}%")]
    rows += [(f"average_order.{c}", tr(lang, "dashboard.average_order", currency=c), tr.money(lang, v, c))
             for c, v in p.average_order.items()]
    rows += [(f"refund_bp.{c}", tr(lang, "dashboard.refund_ratio", currency=c), f"{v / 100:.2f}%")
             for c, v in p.refund_bp.items()]
    rows += [(f"channel.{c}", tr(lang, "dashboard.channel_orders", channel=c), str(v)) for c, v in p.channels.items()]
    rows += [(f"language.{c}", tr(lang, "dashboard.language_orders", language=c), str(v))
             for c, v in p.languages.items()]
    rows += [(f"cohort.{c.month}", tr(lang, "dashboard.cohort", month=c.month),
              tr(lang, "dashboard.cohort_value", customers=c.customers, orders=c.orders)) for c in p.cohorts]
    rows += [(f"top.{t.channel}:{t.user_id}", tr(lang, "dashboard.top_customer", channel=t.channel, user=t.user_id),
              tr(lang, "dashboard.top_value", orders=t.orders)) for t in p.top]
    body = "".join(f'<tr data-key="{html.escape(k)}"><td>{html.escape(label)}</td><td>{html.escape(v)}</td></tr>'
                   for k, label, v in rows)
    return f'<div class="scroll"><table id="portrait"><tbody>{body}</tbody></table></div>'


def page_html(tr: Translator, lang: str, view: Overview, people: Portrait, images: list[tuple[str, bytes]]) -> str:
    first, last = view.by_sku.local_days()
    title = html.escape(tr(lang, "dashboard.title"))
    period = html.escape(tr(lang, "dashboard.period", first=first.isoformat(), last=last.isoformat(),
                            timezone=view.by_sku.timezone))
    figures = "".join(f'<img alt="{html.escape(t)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                      for t, png in images)
    h2 = {k: html.escape(tr(lang, f"dashboard.{k}")) for k in ("charts", "by_channel", "by_sku", "over_time",
                                                              "customers_title")}
    return (f'<!doctype html><html lang="{"zh-CN" if lang == "zh_CN" else "en"}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{CSS}</style></head><body>"
            f'<h1>{title}</h1><p class="period">{period}</p>'
            f'<h2>{h2["charts"]}</h2>{figures}'
            f'<h2>{h2["by_channel"]}</h2>{money_table(tr, lang, view.by_channel, "by-channel")}'
            f'<h2>{h2["by_sku"]}</h2>{money_table(tr, lang, view.by_sku, "by-sku")}'
            f'<h2>{h2["over_time"]}</h2>{money_table(tr, lang, view.over_time, "over-time")}'
            f'<h2>{h2["customers_title"]}</h2>{portrait_table(tr, lang, people)}'
            "</body></html>")


def refused_html(tr: Translator, lang: str) -> str:
    title = html.escape(tr(lang, "dashboard.refused_title"))
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{title}</title><style>{CSS}</style></head>'
            f'<body><h1 id="refused">{title}</h1><p>{html.escape(tr(lang, "dashboard.refused"))}</p></body></html>')


def dashboard_routes(links: DashboardLinks, page: DashboardPage) -> list[Route]:
    async def dashboard(request: Request) -> HTMLResponse:
        try:
            first, last, lang = links.verify(request.query_params)
        except LinkRefused as exc:
            log.info("event=dashboard.refused reason=%s", str(exc).replace(" ", "_"))
            lang = request.query_params.get("lang", "")
            lang = lang if lang in LANGUAGES else page.tr.default
            return HTMLResponse(refused_html(page.tr, lang), status_code=403, headers=PAGE_HEADERS)
        return HTMLResponse(await page.render(first, last, lang), headers=PAGE_HEADERS)

    return [Route("/dashboard", dashboard, methods=["GET"])]
