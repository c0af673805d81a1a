"""The JSON plan (``plan --format json``): raw values, every change, for programs.

The document is described by ``schemas/plan.schema.json``; ``format_version`` changes only
when a program reading version 1 would misread it.
"""

from __future__ import annotations

import json

from ..changes import Plan


def render_json(plan: Plan) -> str:
    doc = plan.to_json()
    doc["brake"] = plan.brake_violations()
    # ASCII with \u escapes, as ``show --format json``: a name from a table may hold bytes that
    # are not UTF-8 (surrogate escapes), which only an escape can carry in valid JSON
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
