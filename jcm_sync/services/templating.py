"""The one way jcm-sync builds a Jinja2 environment for the HTML it renders.

Why this module exists: two pages are rendered from templates shipped as package data,
the operations console (``net/console.py``, templates in ``jcm_sync/net/templates``) and
the Joint Committee's report (``services/jc_report_html.py``, templates in
``jcm_sync/services/templates``). Both hold text from configurations, peers and signed
records, so both need the same safe settings; this module is where those settings are
written once, below the console's layer and beside the report's.

Rules:

1. **Escaped.** Autoescaping is on for every template: a value is text, never markup.
2. **Strict.** A missing value is an error (``StrictUndefined``), not an empty cell.
3. **Shipped templates only.** Templates are read from the ``templates`` folder of the
   named package (``importlib.resources``), so an installed wheel renders the same
   pages as a checkout; nothing is read from the working directory.
4. **Tidy blocks.** ``trim_blocks`` and ``lstrip_blocks``: a ``{% ... %}`` line leaves
   no blank line or indentation behind.
5. The caller adds its own filters and globals, and decides whether to keep the
   environment (the console builds one per process; the report one per rendering).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Mapping
from typing import Any

import jinja2

__all__ = ["template_environment"]


def template_environment(
    package: str,
    filters: Mapping[str, Callable[..., str]],
    globals_: Mapping[str, Any] | None = None,
) -> jinja2.Environment:
    """An environment over ``<package>/templates`` (rule 3), autoescaped (rule 1), strict
    about missing values (rule 2), with ``filters`` and ``globals_`` added (rule 5)."""

    def load(name: str) -> str:
        return importlib.resources.files(package).joinpath("templates", name).read_text("utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filters)
    env.globals.update(globals_ or {})
    return env
