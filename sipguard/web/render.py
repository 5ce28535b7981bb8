"""The Jinja2 environment the dashboard's pages and chart are rendered with: templates in
``web/templates/``, autoescape on for every one of them (HTML and SVG alike), and a name
a template does not know is an error rather than an empty string."""

from __future__ import annotations

from typing import Any

import jinja2

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sipguard.web", "templates"),
    autoescape=True,  # escape whatever is not marked safe
    undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)


def render(template: str, **context: Any) -> str:
    """``template`` rendered with ``context``."""
    return TEMPLATES.get_template(template).render(**context)
