"""The compliance report as one self-contained HTML file (``sanctum report gdpr --html FILE``).

The same template part renders the web page, so the file and the page show the same things. The
file carries the site's stylesheet inline (it is opened from disk, where no server sends it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
STYLESHEET = TEMPLATES.parent / "static" / "sanctum.css"


def render(report: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report_document.html").render(r=report, css=STYLESHEET.read_text())
