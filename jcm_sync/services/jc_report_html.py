"""The Joint Committee's reconciliation report as one self-contained HTML file.

Why this module exists: a Joint Committee member opens the report from an e-mail or a
shared folder, often offline, and prints it for the meeting. So the file must carry
everything it shows and read the same on paper. It renders the view of
``services.jc_report`` with the Jinja2 template ``templates/jc_report.html.j2``, shipped
as package data (``[tool.setuptools.package-data]`` in pyproject.toml).

Rules:

1. **Self-contained.** One file: the CSS is inline, there is no script, font, image or
   link to anything outside the file; the only links are to its own sections
   (``#finding-<id>``).
2. **Escaped.** Autoescaping is on: summaries, explanations and keys come from signed
   records both sides wrote, and are text, never markup.
3. **A chart that needs no colour.** Findings per stage are an inline SVG of three bars
   per stage (open, explained, resolved), each labelled with its status and count in
   text, and drawn distinguishably in grey scale (solid, dashed, outlined), with a
   ``<title>`` and ``<desc>`` that say the same for screen readers.
4. **Printable.** A4 page, table headers repeated on each page, a finding not split
   across pages where it fits, no background needed to read anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import jinja2

from jcm_sync.services.jc_report import STAGE_TITLES, STATUSES, JcReport
from jcm_sync.services.templating import template_environment

TEMPLATE: Final = "jc_report.html.j2"

# chart geometry (rule 3), in SVG user units (px)
_LEFT: Final = 190  # stage titles to the left of the bars
_SPAN: Final = 360  # the longest bar
_BAR: Final = 16
_GAP: Final = 4
_GROUP_GAP: Final = 14
_STYLE: Final[dict[str, tuple[str, str]]] = {  # status: (fill, stroke-dasharray)
    "open": ("#222222", ""),
    "explained": ("#aaaaaa", "4 2"),
    "resolved": ("#ffffff", ""),
}


@dataclass(frozen=True)
class Bar:
    label: str
    y: int
    width: int
    fill: str
    dash: str
    text_x: int
    text_y: int


@dataclass(frozen=True)
class Group:
    title: str
    label_y: int
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bar: int
    groups: tuple[Group, ...]


def chart(view: JcReport) -> Chart:
    """Rule 3: the bars of findings per stage and status, scaled to the largest count."""
    top = max((getattr(s, st) for s in view.stages for st in STATUSES), default=0)
    groups = []
    y = 0
    for s in view.stages:
        bars = []
        for i, status in enumerate(STATUSES):
            n: int = getattr(s, status)
            by = y + i * (_BAR + _GAP)
            width = round(_SPAN * n / top) if top else 0
            fill, dash = _STYLE[status]
            bars.append(Bar(f"{status}: {n:,}", by, width, fill, dash,
                            _LEFT + width + 6, by + _BAR - 3))  # fmt: skip
        group_height = len(STATUSES) * (_BAR + _GAP) - _GAP
        groups.append(Group(s.title, y + group_height // 2 + 5, tuple(bars)))
        y += group_height + _GROUP_GAP
    return Chart(_LEFT + _SPAN + 130, max(y - _GROUP_GAP, 0) + 2, _LEFT, _BAR, tuple(groups))


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else "–"


def _day(d: date | None) -> str:
    return d.isoformat() if d is not None else "–"


def _num(n: int | None) -> str:
    return f"{n:,}" if n is not None else "–"


def _signed(n: int | None) -> str:
    return f"{n:+,}" if n is not None else "–"


def _words(text: str) -> str:
    return text.replace("_", " ")


def environment() -> jinja2.Environment:
    """The template environment: autoescaped (rule 2), strict about missing values."""
    return template_environment(
        "jcm_sync.services",
        {"when": _when, "day": _day, "num": _num, "signed": _signed, "words": _words},
    )


def render_html(view: JcReport) -> str:
    """The report as one HTML document (rules 1-4)."""
    template = environment().get_template(TEMPLATE)
    return template.render(r=view, counts=view.counts(), chart=chart(view), titles=STAGE_TITLES)
