"""The JSON Schema: a valid 2020-12 schema, documented key by key, in step with VMailMgr's options,
and the fast gate agreeing with jsonschema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from tests.desired.test_corpus import DATA
from vmreconcile.desired import schema as schema_module
from vmreconcile.desired.yamlread import read_yaml
from vmreconcile.formats.config import OPTIONS
from vmreconcile.formats.hashing import SCHEMES


def walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, path + (index,))


def test_the_schema_is_valid_json_schema_2020_12():
    schema = schema_module.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_key_of_the_format_has_a_description():
    schema = schema_module.load_schema()
    missing = [
        path + (key,)
        for path, node in walk(schema)
        if "properties" in node and isinstance(node["properties"], dict)
        for key, sub in node["properties"].items()
        if "description" not in sub
    ]
    assert missing == []
    assert all("description" in d for d in schema["$defs"].values())


def test_options_and_schemes_match_vmailmgr_and_hashing():
    schema = schema_module.load_schema()
    assert list(schema["$defs"]["options"]["properties"]) == list(OPTIONS)
    assert sorted(schema["properties"]["passwords"]["properties"]["scheme"]["enum"]) == sorted(SCHEMES)


def documents():
    for folder in ("valid", "invalid"):
        for path in sorted((DATA / folder).glob("*.yaml")):
            value, problems = read_yaml(path.read_bytes(), path.name)
            if not problems and value is not None:
                yield pytest.param(value, id=f"{folder}/{path.name}")


@pytest.mark.parametrize("doc", list(documents()))
def test_the_fast_gate_and_jsonschema_agree(doc):
    if schema_module._fast_gate() is None:
        pytest.skip("fastjsonschema is not installed")
    slow_valid = not list(schema_module._validator().iter_errors(doc))
    assert schema_module._is_valid_fast(doc) == slow_valid


def test_the_schema_file_is_where_editors_find_it():
    path = schema_module.schema_path()
    assert path.name == "vmreconcile.schema.json" and path.is_file()
    example = Path(__file__).resolve().parents[2] / "examples" / "howto.yaml"
    line = example.read_text().splitlines()[0]
    assert line == "# yaml-language-server: $schema=../schemas/vmreconcile.schema.json"
    assert (example.parent / "../schemas/vmreconcile.schema.json").resolve() == path.resolve()
