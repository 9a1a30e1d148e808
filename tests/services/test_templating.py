"""``services.templating``: the environment both HTML renderers (the console and the JC
report) are built on escapes values, refuses missing ones, reads only the named package's
shipped templates, and carries the caller's filters and globals."""

from __future__ import annotations

import importlib.resources

import jinja2
import pytest

from jcm_sync.services.templating import template_environment

HOSTILE = '<script>alert("x")</script>'


def test_values_are_escaped_text() -> None:
    env = template_environment("jcm_sync.services", {})
    out = env.from_string("<td>{{ v }}</td>").render(v=HOSTILE)
    assert out == "<td>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>"


def test_a_missing_value_is_an_error_not_an_empty_cell() -> None:
    env = template_environment("jcm_sync.services", {})
    with pytest.raises(jinja2.UndefinedError, match="absent"):
        env.from_string("<td>{{ absent }}</td>").render()


def test_block_lines_leave_no_blank_lines() -> None:
    env = template_environment("jcm_sync.services", {})
    out = env.from_string("<ul>\n  {% for x in xs %}\n  <li>{{ x }}</li>\n  {% endfor %}\n</ul>")
    assert out.render(xs=[1, 2]) == "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>"


@pytest.mark.parametrize(
    ("package", "name"),
    [("jcm_sync.services", "jc_report.html.j2"), ("jcm_sync.net", "base.html.j2")],
)
def test_templates_come_from_the_named_package(package: str, name: str) -> None:
    env = template_environment(package, {})
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    shipped = importlib.resources.files(package).joinpath("templates", name).read_text("utf-8")
    assert source == shipped


def test_a_template_of_another_package_is_not_found_here() -> None:
    env = template_environment("jcm_sync.services", {})
    with pytest.raises(FileNotFoundError):
        env.get_template("base.html.j2")  # the console's, under jcm_sync/net


def test_filters_and_globals_are_the_callers() -> None:
    env = template_environment(
        "jcm_sync.services", {"shout": lambda s: str(s).upper()}, {"site": "JP hub"}
    )
    assert env.from_string("{{ site | shout }}").render() == "JP HUB"
    bare = template_environment("jcm_sync.services", {})
    with pytest.raises(jinja2.TemplateAssertionError, match="shout"):
        bare.from_string("{{ site | shout }}")
    with pytest.raises(jinja2.UndefinedError):
        bare.from_string("{{ site }}").render()
