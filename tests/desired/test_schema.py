"""The JSON Schema: a valid 2020-12 schema, documented key by key, in step with VMailMgr's options,
and the fast gate agreeing with jsonschema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.desired.test_corpus import DATA
from vmreconcile.desired import schema as schema_module
from vmreconcile.desired import schemagen, units
from vmreconcile.desired.load import check_config
from vmreconcile.desired.spec import YAML_USER_FIELDS
from vmreconcile.desired.yamlread import read_yaml
from vmreconcile.formats.config import OPTIONS
from vmreconcile.formats.hashing import SCHEMES
from vmreconcile.model import USER_FIELD_TABLE, USER_FIELDS


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


@pytest.mark.parametrize("name", sorted(schemagen.GENERATORS))
def test_the_schema_files_are_generated_from_the_field_and_option_tables(name):
    """The user/alias entries and options of both schemas come from the tables in the code:
    run ``python -m vmreconcile.desired.schemagen`` after changing a table."""
    path = schema_module.resources.schema_path(name)
    assert path.read_text("utf-8") == schemagen.regenerated(path), f"{name} is out of date"


def test_every_yaml_user_field_is_in_the_schema_the_spec_and_the_semantic_checks():
    schema = schema_module.load_schema()
    yaml_fields = [f.name for f in sorted((f for f in USER_FIELD_TABLE if f.yaml_rank), key=lambda f: f.yaml_rank)]
    assert list(schema["$defs"]["alias"]["properties"]) == yaml_fields
    assert list(schema["$defs"]["user"]["properties"]) == [*yaml_fields, "aliases"]
    assert list(YAML_USER_FIELDS) == yaml_fields
    show = json.loads(schema_module.resources.schema_path("show.schema.json").read_text())
    assert show["$defs"]["user"]["required"] == list(USER_FIELDS)
    # every unit has a schema, and every number unit a parser and an export spelling
    for field in USER_FIELD_TABLE:
        assert field.unit in schemagen.SHOW_UNITS
        assert field.unit == "key" or field.unit in schemagen.CONFIG_UNITS
        assert (field.unit in units.PARSERS) == (field.unit in units.FORMATS)


def test_a_user_spec_takes_exactly_the_table_fields():
    from vmreconcile.desired.spec import UNSET, UserSpec

    spec = UserSpec("me", hard_quota=5)
    assert spec.hard_quota == 5 and spec.given == {"hard_quota": 5}
    assert all(getattr(spec, name) is UNSET for name in YAML_USER_FIELDS if name != "hard_quota")
    assert spec.with_changes(personal="x").given == {"hard_quota": 5, "personal": "x"}
    assert spec.with_changes(personal="x") != spec and spec.with_changes() == spec
    with pytest.raises(TypeError, match="unknown fields"):
        UserSpec("me", hardquota=5)


def test_a_list_or_mapping_where_a_word_is_meant_is_named_by_its_kind(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("passwords:\n  scheme: {a: 1}\nversion: [1]\n")
    assert [str(e) for e in check_config(path).errors] == [
        f"{path}:2:11: passwords.scheme: a mapping is not one of: bcrypt, md5-crypt, sha256-crypt, sha512-crypt, yescrypt",
        f"{path}:3:10: version: a list is not supported (only 1)",
    ]
