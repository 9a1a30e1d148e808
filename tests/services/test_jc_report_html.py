"""The Joint Committee report as one HTML file (``services.jc_report_html``), parsed
back with ``html.parser``."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

import jcm_sync
from jcm_sync.services.jc_report import STATUSES, JcReport, load_view
from jcm_sync.services.jc_report_html import TEMPLATE, chart, render_html
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.jc_report_seed import Seeded, seed
from tests.store.state import with_store

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

#: elements that would fetch or run something from outside the file
FETCHING = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source",
            "use", "image", "base", "meta-refresh"}  # fmt: skip


@dataclass
class Parsed:
    """What a test needs of an HTML document: ids, links, texts, styles, tags."""

    tags: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    refs: list[tuple[str, str, str]] = field(default_factory=list)
    """(tag, attribute, value) of every attribute that names a resource."""
    svg_texts: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.tags.append(tag)
        self._stack.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.out.ids.add(value)
            if name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset"):
                self.out.refs.append((tag, name, value or ""))
            if name == "style" and value:
                self.out.styles.append(value)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self._stack and self._stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.out.text.append(data)
        if self._stack and self._stack[-1] == "style":
            self.out.styles.append(data)
        if self._stack and self._stack[-1] == "text" and "svg" in self._stack:
            self.out.svg_texts.append(data.strip())


def parse(document: str) -> Parsed:
    p = _Parser()
    p.feed(document)
    p.close()
    return p.out


def assert_self_contained(doc: Parsed) -> None:
    """Rule 1: nothing fetched, nothing run, links only to the file's own ids."""
    assert not FETCHING & set(doc.tags), FETCHING & set(doc.tags)
    for tag, name, value in doc.refs:
        assert (tag, name) == ("a", "href"), value
        assert value.startswith("#"), value
        assert value[1:] in doc.ids, value
    for css in doc.styles:
        assert "url(" not in css, css
        assert "@import" not in css, css


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("jc-html"))


@pytest.fixture(scope="module")
def view(seeded: Seeded) -> JcReport:
    return with_store(seeded.config, lambda store: load_view(store, PID, "ID", NOW))


def test_every_finding_pending_item_and_held_range_is_in_the_page(view: JcReport) -> None:
    """Each finding has its own section (``finding-<id>``) with both figures; every held
    range and pending item is listed; the document is self-contained."""
    document = render_html(view)
    doc = parse(document)
    assert_self_contained(doc)
    text = " ".join(doc.text)
    for f in view.findings:
        assert f"finding-{f.id}" in doc.ids
        assert f.summary in text
        for rec in f.records:
            assert rec.short_id in text
    for g in view.held:
        assert g.first in text
        assert g.last in text
    for p in view.pending:
        assert p.summary in text
        if p.due is not None:
            assert p.due.isoformat() in text
    over = next(f for f in view.findings if f.rule == "issued-vs-notified")
    assert ">9<" in document.split(f'id="finding-{over.id}"')[1].split("</article>")[0]


def test_the_chart_is_inline_svg_labelled_in_text(view: JcReport) -> None:
    """Rule 3: one inline SVG, a title, and a text label with status and count for every
    bar: the chart reads without colour."""
    doc = parse(render_html(view))
    assert doc.tags.count("svg") == 1
    assert "title" in doc.tags
    expected = [f"{st}: {getattr(s, st)}" for s in view.stages for st in STATUSES]
    labels = [t for t in doc.svg_texts if ":" in t]
    assert labels == expected
    assert [t for t in doc.svg_texts if ":" not in t and t] == [s.title for s in view.stages]


def test_chart_bars_scale_to_the_largest_count(view: JcReport) -> None:
    """The longest bar is the largest count; a zero count draws no length; an empty
    report draws a chart of zeros without dividing by zero."""
    c = chart(view)
    bars = [b for g in c.groups for b in g.bars]
    top = max(int(b.label.split(": ")[1]) for b in bars)
    assert {b.width for b in bars if b.label.endswith(f": {top}")} == {max(b.width for b in bars)}
    assert all(b.width == 0 for b in bars if b.label.endswith(": 0"))
    empty = replace(view, findings=(),
                    stages=tuple(replace(s, open=0, explained=0, resolved=0)
                                 for s in view.stages))  # fmt: skip
    assert all(b.width == 0 for g in chart(empty).groups for b in g.bars)
    assert "No discrepancy found" in render_html(empty)


def test_text_from_records_is_escaped(view: JcReport) -> None:
    """Rule 2: a counterpart's explanation is text, never markup."""
    f = next(f for f in view.findings if f.resolutions)
    evil = '<script>alert("x")</script><a href="https://example.org">x</a>'
    res = (replace(f.resolutions[0], text=evil),)
    changed = replace(view, findings=tuple(
        replace(x, resolutions=res) if x.id == f.id else x for x in view.findings))  # fmt: skip
    document = render_html(changed)
    doc = parse(document)
    assert_self_contained(doc)
    assert evil in " ".join(doc.text)
    assert "&lt;script&gt;" in document


def test_printable(view: JcReport) -> None:
    """Rule 4: print rules, a page size, and table headers that repeat on each page."""
    document = render_html(view)
    assert "@media print" in document
    assert "@page" in document
    assert "table-header-group" in document


def test_the_wheel_carries_the_template() -> None:
    """The template is package data: pyproject's package-data globs match it."""
    package = Path(jcm_sync.__file__).parent
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert (package / "services" / "templates" / TEMPLATE).is_file()
    globs = pyproject["tool"]["setuptools"]["package-data"]["jcm_sync"]
    assert any(fnmatch.fnmatch(f"services/templates/{TEMPLATE}", g) for g in globs), globs
