"""Plan renderers, one module per format: text for people, markdown for a pull-request comment,
JSON for programs.

Renderers only lay a `Plan` out. What they show was decided elsewhere: hashes were masked when
the changes were built (`changes.mask_password`), the grouping of alike changes is
`overview.entries`, and how a value reads is `values`. The text and markdown renderers take a
`View`: ``default`` (a summary first, alike changes grouped, short enough for one screen or
one comment), ``compact`` (one line per change) or ``detail`` (every field of every change).
JSON is always complete and raw.
"""

from __future__ import annotations

from ..changes import Plan
from ..values import totals
from .jsondoc import render_json
from .markdown import MARKDOWN_LIMIT, MarkdownRenderer
from .text import Style, TextRenderer, View, plain_style

__all__ = [
    "MARKDOWN_LIMIT",
    "MarkdownRenderer",
    "Style",
    "TextRenderer",
    "View",
    "plain_style",
    "render_json",
    "render_markdown",
    "render_text",
    "summary_line",
]


def summary_line(plan: Plan) -> str:
    """``Plan: 1 to add, 2 to change, 0 to destroy.``"""
    return totals(*plan.summary())


def render_text(plan: Plan, style: Style = plain_style, view: View = "default") -> str:
    return TextRenderer(view=view, style=style).render(plan)


def render_markdown(plan: Plan, view: View = "default", limit: int = MARKDOWN_LIMIT) -> str:
    return MarkdownRenderer(view=view, limit=limit).render(plan)
