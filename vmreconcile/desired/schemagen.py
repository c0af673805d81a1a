"""The parts of the JSON schemas that come from tables in the code, and the command that writes them.

``schemas/vmreconcile.schema.json`` (the configuration), ``schemas/show.schema.json`` (the
``show --format json`` document) and ``schemas/plan.schema.json`` (``plan --format json``) are
files, so editors and other tools can use them. Their user and alias entries (and a plan's
user changes) come from the field table (``model.USER_FIELD_TABLE``), the configuration's
options from ``formats.config.OPTIONS``, the control file names from
``formats.control.CONTROL_FILES``; everything else in them is written by hand. ``python -m vmreconcile.desired.schemagen`` rewrites the derived parts in place
(``--check``: exit 1 when a file is out of date); ``tests/desired/test_schema.py`` fails
until it has been run, so a new field cannot be forgotten in a schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..formats.config import DIR, LIST, OPTIONS, UNSIGNED
from ..formats.control import CONTROL_FILES, RCPTHOSTS_FILES
from ..model import USER_FIELD_TABLE
from .spec import HISTORY_KEEP_DEFAULT, HISTORY_KEEP_MAX

#: A unit -> its JSON Schema in the configuration (the YAML a person writes).
CONFIG_UNITS: dict[str, dict[str, Any]] = {
    "hash": {"$ref": "#/$defs/password"},
    "text": {"type": "string"},
    "flag": {"type": "boolean"},
    "addresses": {"type": "array", "items": {"type": "string"}},
    "size": {"$ref": "#/$defs/size"},
    "count": {"$ref": "#/$defs/count"},
    "time": {"$ref": "#/$defs/time"},
    "expiry": {"$ref": "#/$defs/expiry"},
}
#: A unit -> its JSON Schema in the show document (model values as they are).
SHOW_UNITS: dict[str, dict[str, Any]] = {
    "key": {"type": "string"},
    "hash": {"type": "string"},
    "text": {"type": "string"},
    "flag": {"type": "boolean"},
    "addresses": {"type": "array", "items": {"type": "string"}},
    "size": {"$ref": "#/$defs/limit"},
    "count": {"$ref": "#/$defs/limit"},
    "time": {"type": "integer", "minimum": 0},
    "expiry": {"type": ["integer", "null"], "minimum": 0},
}
_OPTION_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    DIR: ({"type": "string"}, "A directory (a '/' is appended when missing)."),
    UNSIGNED: (
        {"type": ["integer", "string"]},
        "Unsigned: an integer, a size such as '100 MiB', or 'unlimited' (VMailMgr's '-').",
    ),
    LIST: (
        {"type": "array", "items": {"type": "string", "minLength": 1}},
        "A list of names, one per line in the option file.",
    ),
}
_STRING_OPTION = ({"type": "string"}, "A string (first line of the option file).")


def config_user_properties() -> dict[str, dict[str, Any]]:
    """The keys of a YAML user or alias entry that are user fields, in YAML order."""
    fields = sorted((f for f in USER_FIELD_TABLE if f.yaml_rank), key=lambda f: f.yaml_rank)
    return {f.name: {**CONFIG_UNITS[f.unit], "description": f.doc} for f in fields}


def option_properties() -> dict[str, dict[str, Any]]:
    out = {}
    for name, option in OPTIONS.items():
        schema, words = _OPTION_KINDS.get(option.kind, _STRING_OPTION)
        out[name] = {**schema, "description": f"{option.description}. {words}"}
    return out


def config_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the configuration schema) with its derived parts made from the tables."""
    defs = schema["$defs"]
    fields = config_user_properties()
    defs["options"]["properties"] = option_properties()
    extra = {k: v for k, v in defs["user"]["properties"].items() if k not in fields and k != "aliases"}
    extra.update({k: v for k, v in defs["user"]["properties"].items() if k == "aliases"})
    defs["user"]["properties"] = {**fields, **extra}
    defs["alias"]["properties"] = dict(fields)
    defs["domain"]["properties"]["rcpthosts_file"]["enum"] = list(RCPTHOSTS_FILES)
    keep = schema["properties"]["history"]["properties"]["keep"]
    keep["maximum"] = HISTORY_KEEP_MAX
    keep["description"] = (
        f"How many entries to keep; older ones are deleted after each apply. Default {HISTORY_KEEP_DEFAULT}, "
        f"at most {HISTORY_KEEP_MAX}."
    )
    return schema


def show_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the show document's schema) with its user entry made from the field table."""
    schema["properties"]["control"]["propertyNames"] = {"enum": list(CONTROL_FILES)}
    user = schema["$defs"]["user"]
    user["required"] = [f.name for f in USER_FIELD_TABLE]
    user["properties"] = {
        f.name: {**SHOW_UNITS[f.unit], **({"description": f.show_doc} if f.show_doc else {})} for f in USER_FIELD_TABLE
    }
    return schema


#: A unit -> its JSON Schema in a plan's before/after (model values; hashes masked).
PLAN_UNITS: dict[str, dict[str, Any]] = {
    **SHOW_UNITS,
    "hash": {"type": "string", "description": "Masked: '<scheme sha256:fingerprint>', or '*' / '!...' as stored."},
}


def plan_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the JSON plan's schema) with a user change's fields made from the field table."""
    schema["$defs"]["user_fields"]["properties"] = {
        f.name: {**PLAN_UNITS[f.unit], **({"description": f.show_doc} if f.show_doc and f.unit != "hash" else {})}
        for f in USER_FIELD_TABLE
        if f.unit != "key"
    }
    return schema


GENERATORS = {
    "vmreconcile.schema.json": config_schema,
    "show.schema.json": show_schema,
    "plan.schema.json": plan_schema,
}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def regenerated(path: Path) -> str:
    """The text ``path`` (one of `GENERATORS`) must have."""
    return render(GENERATORS[path.name](json.loads(path.read_text("utf-8"))))


def main(argv: list[str] | None = None) -> int:
    from .. import resources

    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = []
    for name in GENERATORS:
        path = resources.schema_path(name)
        text = regenerated(path)
        if path.read_text("utf-8") == text:
            continue
        stale.append(str(path))
        if not check:
            path.write_text(text, "utf-8")
    for where in stale:
        print(f"{where}: {'out of date' if check else 'rewritten'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
