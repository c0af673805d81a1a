"""Structure and types of a configuration, checked against ``schemas/vmreconcile.schema.json``.

The JSON Schema (2020-12) is the contract editors use; this module applies it and turns each
violation into a positioned `Diagnostic` with a message people understand ("unknown key
'hardquota'; did you mean 'hard_quota'?"). Values (names, sizes, dates, passwords, references)
are checked by `semantics`, so the two never report the same problem twice.

``jsonschema`` needs about 3 s for 100,000 users; when ``fastjsonschema`` is installed the
same schema is compiled once and used as a fast "is it valid?" gate, and ``jsonschema`` only
runs to list the errors of an invalid document.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import resources
from .errors import Diagnostic, PathPart
from .positions import locate
from .yamlread import REFUSED

TYPE_CHECKING = False
if TYPE_CHECKING:
    import jsonschema

SCHEMA_NAME = "vmreconcile.schema.json"
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
    "object": "a mapping",
    "array": "a list",
}


def schema_path() -> Path:
    """The schema file (``schemas/`` of a checkout, package data of a wheel)."""
    return resources.schema_path(SCHEMA_NAME)


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text("utf-8"))


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # only to explain an invalid document: a valid one never loads it (~40 ms)

    return jsonschema.Draft202012Validator(load_schema())


@lru_cache(maxsize=1)
def _fast_gate() -> Callable[[object], object] | None:
    try:
        import fastjsonschema
    except ImportError:
        return None
    try:
        return fastjsonschema.compile(load_schema())
    except Exception:
        return None


def _is_valid_fast(doc: object) -> bool | None:
    gate = _fast_gate()
    if gate is None:
        return None
    try:
        gate(doc)
    except Exception:
        return False
    return True


def schema_errors(doc: object) -> list[Diagnostic]:
    """Every schema violation of the merged document ``doc`` (YMap/YList with positions)."""
    if _is_valid_fast(doc):
        return []
    out: list[Diagnostic] = []
    for error in _validator().iter_errors(doc):
        if error.instance is REFUSED:
            continue  # the reader has said what is wrong with it
        out.extend(_translate(error, doc))
    return out


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _shown(value: object) -> str:
    """A scalar as written (``'md6'``), anything else by its kind (``a mapping``)."""
    return repr(value) if value is None or isinstance(value, (str, int, float)) else _kind(value)


def _expected(types: str | Sequence[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_WORDS.get(t, t) for t in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _translate(error: jsonschema.ValidationError, doc: object) -> list[Diagnostic]:
    path: list[PathPart] = list(error.absolute_path)
    instance = error.instance
    validator = error.validator
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        out = []
        for key in instance:
            if key in known:
                continue
            hint = difflib.get_close_matches(key, known, n=1)
            message = f"unknown key {key!r}"
            message += f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(known)})"
            out.append(Diagnostic(locate(doc, path + [key], at_key=True), tuple(path + [key]), message))
        return out
    if validator == "required" and isinstance(instance, dict):
        missing = [key for key in error.validator_value if key not in instance]
        return [
            Diagnostic(locate(doc, path, at_key=True), tuple(path), f"missing required key {key!r}") for key in missing
        ]
    if validator == "type":
        message = f"expected {_expected(error.validator_value)}, found {_kind(instance)}"
        if isinstance(instance, bool):
            message += " (YAML reads yes/no/on/off as true/false: quote the value)"
    elif validator == "enum":
        message = f"{_shown(instance)} is not one of: {', '.join(str(v) for v in error.validator_value)}"
    elif validator == "const":
        message = f"{_shown(instance)} is not supported (only {error.validator_value!r})"
    elif validator in ("minProperties", "maxProperties"):
        message = "write exactly one of 'env: VARIABLE' or 'file: PATH'"
    elif validator == "minLength":
        message = "must not be empty"
    elif validator == "minimum":
        message = f"{instance!r} is too small (at least {error.validator_value})"
    else:  # pragma: no cover - every keyword the schema uses is handled above
        message = error.message
    return [Diagnostic(locate(doc, path), tuple(path), message)]
