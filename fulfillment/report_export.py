"""The report module's results as files (issue 16): CSV and XLSX with the same columns, rows and totals as the
text and JSON forms; amounts stay integer minor units (a spreadsheet sums them exactly), each row with its currency.
Used by `kamibot report --format xlsx` and by the merchant's `/report … csv|xlsx` document."""

from __future__ import annotations

import io

from fulfillment.money_report import COLUMNS, MoneyReport

FORMATS = ("csv", "xlsx")
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def filename(report: MoneyReport, fmt: str) -> str:
    first, last = report.local_days()
    return f"report-{first.isoformat()}-{last.isoformat()}-by-{report.by}.{fmt}"


def to_csv(report: MoneyReport) -> bytes:
    """UTF-8 with a byte-order mark, so Excel opens Chinese SKU names correctly."""
    return b"\xef\xbb\xbf" + report.as_csv().encode("utf-8")


def to_xlsx(report: MoneyReport) -> bytes:
    """One sheet: a title line (period, grouping, timezone), the header, the rows, the per-currency totals in bold
    and, when asked for, the converted total labelled as converted."""
    from openpyxl import Workbook  # imported when used: the CLI and the bot start without it
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook always has its first sheet
    ws.title = "report"
    first, last = report.local_days()
    ws.append([f"{first.isoformat()} – {last.isoformat()} ({report.timezone}), by {report.by}, minor units"])
    ws.append(list(COLUMNS))
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for r in report.rows:
        d = r.as_dict()
        ws.append([d[c] for c in COLUMNS])
    for t in report.totals:
        d = t.as_dict()
        ws.append([d[c] for c in COLUMNS])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    if report.converted is not None:
        c = report.converted
        ws.append([f"total (converted to {c.currency})", c.currency, None, c.revenue, c.refunds, c.cost, c.fees,
                   c.commission, c.profit])
    if report.skipped:
        ws.append([f"not converted (no rate): {', '.join(report.skipped)}"])
    ws.column_dimensions["A"].width = 28
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export(report: MoneyReport, fmt: str) -> tuple[str, bytes]:
    """(filename, bytes) of the report in `fmt` (csv or xlsx); ValueError for another format."""
    if fmt == "csv":
        return filename(report, fmt), to_csv(report)
    if fmt == "xlsx":
        return filename(report, fmt), to_xlsx(report)
    raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
