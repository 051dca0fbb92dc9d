"""Charts for the researcher pages: pygal renders SVG on the server.

pygal's own JavaScript (tooltips) is switched off (``js=[]``), so a page never
fetches anything from the internet; the SVG goes inline into the page as
markup, made fit for the page's Content-Security-Policy first: pygal's inline
script (its tooltip settings, which nothing reads) is dropped, its stylesheet
carries the request's nonce, and its one style attribute becomes a
presentation attribute. Every figure here is display only: money is converted from
micro-credits to credits as a float for plotting, never for a sum.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import pygal  # type: ignore[import-untyped]
from markupsafe import Markup
from pygal.style import Style  # type: ignore[import-untyped]

from credits.api.security_headers import csp_nonce
from credits.reports.schemas import BurnDown, UsageLine

MICRO = 1_000_000

STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#1d2433",
    foreground_strong="#1d2433",
    foreground_subtle="#5b6478",
    colors=("#2457c5", "#1f7a4d", "#9a6200", "#b42318", "#6b3fa0", "#0e7490"),
    font_family="system-ui, sans-serif",
    label_font_size=16,
    major_label_font_size=16,
    legend_font_size=16,
    title_font_size=20,
)


def _config(title: str, *, height: int = 320) -> pygal.Config:
    return pygal.Config(
        js=[],  # never fetch pygal's tooltip script from the internet
        disable_xml_declaration=True,
        style=STYLE,
        title=title,
        height=height,
        width=800,
        legend_at_bottom=True,
        show_minor_x_labels=False,
        x_label_rotation=0,
        truncate_legend=-1,
        print_values=False,
    )


def render_svg(chart: pygal.Graph) -> Markup:
    """The chart as SVG markup that satisfies the page's Content-Security-Policy."""
    chart.add_xml_filter(_fit_for_csp)
    return Markup(chart.render(is_unicode=True))  # noqa: S704 - pygal's SVG, escaped by pygal


def _local_name(element: Any) -> str:
    return str(element.tag).rsplit("}", 1)[-1]


def _fit_for_csp(svg: Any) -> Any:
    """The SVG tree without inline script or style attributes; its stylesheet nonced."""
    for parent in list(svg.iter()):
        for child in list(parent):
            if _local_name(child) == "script":
                parent.remove(child)
    for element in svg.iter():
        if _local_name(element) == "style":
            element.set("nonce", csp_nonce())
        declarations = element.attrib.pop("style", None)
        for declaration in (declarations or "").split(";"):
            name, _, value = declaration.partition(":")
            if name.strip() and value.strip():
                element.set(name.strip(), value.strip())
    return svg


def credits_float(micro: int) -> float:
    """Credits to a hundredth, as the pages show them (no micro-credit decimals)."""
    return round(micro / MICRO, 2)


def merge_burn_downs(burn_downs: Iterable[BurnDown]) -> dict[str, list[tuple[date, int]]]:
    """Cumulative use per currency and day, summed over several projects' burn-downs."""
    daily: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for burn in burn_downs:
        for day in burn.daily:
            daily[burn.currency.value][day.date] += day.used
    merged: dict[str, list[tuple[date, int]]] = {}
    for currency, days in daily.items():
        total = 0
        points = []
        for day_date in sorted(days):
            total += days[day_date]
            points.append((day_date, total))
        merged[currency] = points
    return merged


def burn_down_chart(currency: str, points: Sequence[tuple[date, int]], spendable: int) -> Markup:
    """Credits left over time: what was spendable now plus what was used since each day."""
    chart = pygal.Line(_config(f"{currency.upper()} credits left", height=280))
    chart.fill = True
    used_total = points[-1][1] if points else 0
    chart.x_labels = [day.isoformat() for day, _ in points]
    chart.x_labels_major_count = 6
    chart.add(
        "credits left",
        [credits_float(spendable + used_total - cumulative) for _, cumulative in points],
    )
    chart.add("used", [credits_float(cumulative) for _, cumulative in points])
    return render_svg(chart)


def usage_by_month_chart(lines: Sequence[UsageLine], currency: str) -> Markup:
    """Credits used per month, stacked by flavour."""
    mine = [line for line in lines if line.currency.value == currency]
    months = sorted({line.month for line in mine})
    flavours = sorted({line.flavour for line in mine})
    used: dict[tuple[str, str], int] = defaultdict(int)
    for line in mine:
        used[(line.flavour, line.month)] += line.used
    chart = pygal.StackedBar(_config(f"{currency.upper()} credits used by month and flavour"))
    chart.x_labels = months
    for flavour in flavours:
        chart.add(flavour, [credits_float(used[(flavour, month)]) for month in months])
    return render_svg(chart)


def gpu_hours_by_flavour_chart(lines: Sequence[UsageLine]) -> Markup:
    """GPU-hours per flavour over the whole project."""
    hours: dict[str, float] = defaultdict(float)
    for line in lines:
        hours[line.flavour] += line.gpu_hours
    chart = pygal.HorizontalBar(_config("GPU-hours by flavour", height=220))
    for flavour in sorted(hours):
        chart.add(flavour, round(hours[flavour], 3))
    return render_svg(chart)
