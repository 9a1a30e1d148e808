"""The operations console: server-rendered HTML pages of a node's status (Jinja2).

Why this module exists: an operator of the hub or of an agent wants one page that says
whether every partnership is in sync, and where it is not, why: sizes, lag, the last
sync and error, open discrepancies, fork alarms, the trust root and what expires next.
``services.status_view`` gathers the facts (the same ones ``jcm-sync status`` prints);
this module only renders them, with the templates in ``net/templates`` shipped as
package data.

Rules:

1. **No build step, nothing external.** Plain HTML from Jinja2 templates; the CSS is
   inline; charts are inline SVG with text labels, a ``<title>`` and a ``<desc>``; no
   script, font, image or link leaves the listener.
2. **Escaped.** Autoescaping is on and missing values are errors (``StrictUndefined``):
   origins, alarm reasons, errors and summaries come from configurations, peers and signed
   records, and are text, never markup.
3. **Text, then colour.** A state (``ok``, ``lagging``, ``discrepancies``, ``fork``) is
   always written as a word in its cell; the colour of the cell is a second cue only.
4. **Machine-readable cells.** Every table cell carries ``data-field`` naming what it
   shows (the rows of a table also carry the partnership or log they are about), and
   times are ``<time datetime="...">`` with the full ISO 8601 value, so tests and
   scrapers read the page without parsing its layout.
5. **Fresh.** Every page refreshes itself every ``REFRESH_SECONDS`` seconds
   (``<meta http-equiv="refresh">``).
6. **Not found.** An unknown partnership or discrepancy is a 404: an HTML page when the
   request accepts ``text/html`` (a browser following a stale link), problem+json
   otherwise (``net.ops``).
7. **Compiled once.** One environment per process (``environment``), whose templates
   are compiled at their first use and kept: compiling them took about 10 ms a page,
   half of a small page's time, on the event loop that also answers the partners
   (``bench/ops_pages.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import jinja2

from jcm_sync.core.reconcile import Discrepancy
from jcm_sync.core.reconcile.model import RULES
from jcm_sync.services.expiry import Expiry
from jcm_sync.services.ops_history import Series
from jcm_sync.services.status_view import NodeStatus, PartnershipView
from jcm_sync.services.templating import template_environment

REFRESH_SECONDS: Final = 30


def _when(value: Any) -> str:
    """A time as the page shows it: ``YYYY-MM-DD HH:MM:SS`` (UTC), ``never`` if None."""
    if value is None or value == "":
        return "never"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text[:19].replace("T", " ")


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def _num(value: Any) -> str:
    return "–" if value is None else str(value)


@functools.cache
def environment() -> jinja2.Environment:
    """Rule 2 (``services.templating``: autoescaped, strict about missing values); built
    once (rule 7)."""
    return template_environment(
        "jcm_sync.net",
        {"when": _when, "iso": _iso, "num": _num},
        {"refresh": REFRESH_SECONDS, "rules": RULES},
    )


# --- the facts a row shows ---------------------------------------------------------------


def partnership_expiries(status: NodeStatus, pid: str) -> list[Expiry]:
    """The node's keys and the partnership's root as that partnership's root dates them,
    the first to expire first."""
    return sorted((e for e in status.expiries if e.partnership == pid), key=lambda e: e.not_after)


@dataclass(frozen=True)
class Row:
    """One partnership on the index page (rule 4 names its cells)."""

    p: PartnershipView
    expiry: Expiry | None
    """what expires first"""

    @property
    def id(self) -> str:
        return self.p.partnership


def rows(status: NodeStatus) -> list[Row]:
    out = []
    for p in sorted(status.partnerships, key=lambda p: p.partnership):
        exp = partnership_expiries(status, p.partnership)
        out.append(Row(p=p, expiry=exp[0] if exp else None))
    return out


# --- the chart (rule 1) -----------------------------------------------------------------

_W: Final = 760
_H: Final = 200
_LEFT: Final = 64
_RIGHT: Final = 12
_TOP: Final = 22
_BOTTOM: Final = 36


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Line:
    label: str
    dash: str
    points: list[str]  # one "x,y x,y ..." per run of known values
    marks: list[tuple[float, float, int]]  # every known value: x, y, value
    filled: bool  # the own log's marks are filled, the replica's hollow


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    desc: str
    unit: str  # what the vertical axis counts
    width: int
    height: int
    lines: list[Line]
    bars: list[Bar]
    xticks: list[Tick]
    yticks: list[Tick]
    legend: list[tuple[str, str, str]]  # (label, fill or "", dash)
    plot: tuple[int, int, int, int]  # left, top, right, bottom


def _scale(top: int) -> tuple[int, list[int]]:
    top = max(top, 1)
    return top, [0, top // 2, top] if top >= 2 else [0, top]


def _frame(hours: Sequence[datetime], top: int) -> tuple[list[Tick], list[Tick], float, float]:
    n = max(len(hours), 1)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / n
    xticks = [
        Tick(_LEFT + i * step, _H - _BOTTOM + 16, h.strftime("%m-%d"))
        for i, h in enumerate(hours)
        if h.hour == 0
    ]
    _, marks = _scale(top)
    yticks = [Tick(_LEFT - 6, _H - _BOTTOM - plot_h * v / max(top, 1) + 4, str(v)) for v in marks]
    return xticks, yticks, step, plot_h


def _runs(values: Iterable[int | None]) -> list[list[tuple[int, int]]]:
    runs: list[list[tuple[int, int]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]


def _total(values: Iterable[int | None]) -> int:
    return sum(v for v in values if v is not None)


def charts(series: Series) -> list[Chart]:
    """The lag chart (a line per log, solid for this node's own, dashed for the replica)
    and the records chart (a bar per log and hour, dark for own, light for replica)."""
    hours = series.hours
    plot = (_LEFT, _TOP, _W - _RIGHT, _H - _BOTTOM)
    names = {s.node: ("own log " if s.own else "replica of ") + s.node for s in series.logs}

    top, _ = _scale(max((v or 0 for s in series.logs for v in s.lag), default=0))
    xticks, yticks, step, plot_h = _frame(hours, top)
    lines = []
    for s in series.logs:
        dash = "" if s.own else "6 4"
        pts = [
            " ".join(
                f"{_LEFT + (i + 0.5) * step:.1f},{_H - _BOTTOM - plot_h * v / top:.1f}"
                for i, v in run
            )
            for run in _runs(s.lag)
        ]
        marks = [
            (_LEFT + (i + 0.5) * step, _H - _BOTTOM - plot_h * v / top, v)
            for run in _runs(s.lag)
            for i, v in run
        ]
        lines.append(Line(names[s.node], dash, pts, marks, s.own))
    known = [v for s in series.logs for v in s.lag if v is not None]
    sampled = sum(any(s.lag[i] is not None for s in series.logs) for i in range(len(hours)))
    lag = Chart(
        title=f"Lag per hour of {series.partnership}, last 7 days",
        desc=(
            f"Largest lag in entries sampled in each hour; highest {max(known)}, "
            f"sampled in {sampled} of {len(hours)} hours."
            if known
            else "No lag was sampled in the last 7 days."
        ),
        unit="entries behind", width=_W, height=_H, lines=lines, bars=[], xticks=xticks,
        yticks=yticks,
        legend=[(names[s.node], "", "" if s.own else "6 4") for s in series.logs],
        plot=plot,
    )  # fmt: skip

    top, _ = _scale(max((v for s in series.logs for v in s.appended), default=0))
    xticks, yticks, step, plot_h = _frame(hours, top)
    bars = []
    width = step / max(len(series.logs), 1)
    for k, s in enumerate(series.logs):
        fill = "#333333" if s.own else "#9a9a9a"
        for i, v in enumerate(s.appended):
            if v:
                h = plot_h * v / top
                title = f"{names[s.node]}: {v} at {hours[i]:%Y-%m-%d %H}:00"
                bars.append(Bar(_LEFT + i * step + k * width, _H - _BOTTOM - h, width, h, fill,
                                title))  # fmt: skip
    totals = ", ".join(f"{names[s.node]} {_total(s.appended)}" for s in series.logs)
    records = Chart(
        title=f"Records appended per hour to {series.partnership}'s logs, last 7 days",
        desc=f"Records appended in the last 7 days: {totals}.",
        unit="records appended", width=_W, height=_H, lines=[], bars=bars, xticks=xticks,
        yticks=yticks,
        legend=[(names[s.node], "#333333" if s.own else "#9a9a9a", "") for s in series.logs],
        plot=plot,
    )  # fmt: skip
    return [lag, records]


# --- pages ------------------------------------------------------------------------------


def render_index(status: NodeStatus, *, role: str, now: datetime) -> str:
    """``/``: one row per partnership (rules 3 and 4), the warnings and alarms banners."""
    return (
        environment()
        .get_template("index.html.j2")
        .render(status=status, role=role, now=now, rows=rows(status))
    )


def render_partnership(
    status: NodeStatus,
    p: PartnershipView,
    *,
    role: str,
    now: datetime,
    checkpoints: dict[str, str | None],
    series: Series | None,
) -> str:
    """``/partnerships/{id}``: its logs, discrepancies, latest checkpoints and charts."""
    return (
        environment()
        .get_template("partnership.html.j2")
        .render(
            status=status, p=p, role=role, now=now, checkpoints=checkpoints,
            charts=charts(series) if series is not None else [],
            expiries=partnership_expiries(status, p.partnership),
        )
    )  # fmt: skip


def render_discrepancy(
    status: NodeStatus, pid: str, d: Discrepancy, *, role: str, now: datetime
) -> str:
    """``/partnerships/{id}/discrepancies/{did}``: the finding in full."""
    rule = RULES.get(d.rule)
    return (
        environment()
        .get_template("discrepancy.html.j2")
        .render(
            status=status, pid=pid, d=d, rule_title=rule.title if rule else "", role=role, now=now
        )
    )


def render_not_found(status: NodeStatus, detail: str, *, role: str, now: datetime) -> str:
    """Rule 6: the HTML 404 page."""
    return (
        environment()
        .get_template("not_found.html.j2")
        .render(status=status, detail=detail, role=role, now=now)
    )
