"""The safe YAML reader: positions, duplicate keys, tags, aliases, YAML 1.1 scalars."""

from __future__ import annotations

import time

from vmreconcile.desired.positions import locate
from vmreconcile.desired.spec import Position
from vmreconcile.desired.yamlread import REFUSED, YList, YMap, read_yaml


def read(text: str):
    value, problems = read_yaml(text.encode(), "f.yaml")
    return value, [str(p) for p in problems]


def test_every_key_and_value_knows_where_it_was_written():
    doc, problems = read("a:\n  b: [x, y]\n  c:\n    - z\n")
    assert problems == []
    assert isinstance(doc, YMap) and isinstance(doc["a"]["b"], YList)
    assert doc.key_position("a") == Position("f.yaml", 1, 1)
    assert doc["a"].value_position("b") == Position("f.yaml", 2, 6)
    assert doc["a"]["b"].item_position(1) == Position("f.yaml", 2, 10)
    assert locate(doc, ["a", "c", 0]) == Position("f.yaml", 4, 7)
    assert locate(doc, ["a", "c"]) == Position("f.yaml", 3, 3)  # a block list points at its key
    assert locate(doc, ["a", "b"]) == Position("f.yaml", 2, 6)  # a flow list at itself
    assert locate(doc, ["a", "missing", "deeper"]) == Position("f.yaml", 1, 1)


def test_a_duplicate_key_is_reported_and_the_rest_of_the_file_still_read():
    doc, problems = read("a: 1\nb: 2\na: 3\nc: 4\n")
    assert problems == ["f.yaml:3:1: a: duplicate key 'a' (first defined at line 1); YAML would keep only the last one"]
    assert doc == {"a": 1, "b": 2, "c": 4}


def test_duplicate_keys_inside_a_flow_mapping_are_caught_too():
    _, problems = read("x: {k: 1, k: 2}\n")
    assert problems == [
        "f.yaml:1:11: x.k: duplicate key 'k' (first defined at line 1); YAML would keep only the last one"
    ]


def test_yaml_1_1_scalars_and_timestamps_kept_as_text():
    doc, _ = read("a: yes\nb: '012'\nc: 0x10\nd: ~\ne: 2027-06-30\nf: '12'\ng: 1.5\nh: !!str 5\ni:\nj: 1_000\n")
    assert doc == {
        "a": True,
        "b": "012",
        "c": 16,
        "d": None,
        "e": "2027-06-30",
        "f": "12",
        "g": 1.5,
        "h": "5",
        "i": None,
        "j": 1000,
    }


def test_keys_are_the_text_as_written():
    doc, _ = read("yes: 1\n123: 2\nnull: 3\n'x': 4\n")
    assert list(doc) == ["yes", "123", "null", "x"]


def test_anchors_are_shared_and_positions_stay_with_the_anchor():
    doc, problems = read("a: &x [1, 2]\nb: *x\n")
    assert problems == [] and doc["a"] is doc["b"]


def test_billion_laughs_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    start = time.monotonic()
    value, problems = read("\n".join(lines) + "\n")
    assert value is None
    assert problems == [
        "f.yaml:5:45: aliases stand for too many values (101,218 by *a3, more than 100,000 plus 2 per value "
        "written out): write the values out"
    ]
    assert time.monotonic() - start < 2


def test_dangerous_and_unknown_tags_are_refused():
    assert read("a: !!python/name:os.system x\n")[1] == [
        "f.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system': only plain YAML values are allowed"
    ]
    assert read("a: !!set {x}\n")[1][0].startswith("f.yaml:1:4: a: unsupported YAML tag")
    assert read("a: !!binary aGk=\n")[1][0].startswith("f.yaml:1:4: a: unsupported YAML tag")


def test_an_empty_file_is_none_without_problems():
    assert read("") == (None, [])
    assert read("# only a comment\n") == (None, [])


def test_utf8_errors_point_at_the_byte():
    value, problems = read_yaml(b"a: b\nc: d\xe9\n", "f.yaml")
    assert value is None and problems[0].position == Position("f.yaml", 2, 5)


def test_yaml_1_1_octal_binary_and_base_60_are_refused_where_yaml_1_2_would_differ():
    doc, problems = read("a: 0755\nb: '0755'\nc: 0x1F\nd: 1:30\ne: 0b11\nf: 0\ng: 1e3\nh: -0\ni: =\n")
    assert problems == [
        "f.yaml:1:4: a: 0755 is a YAML 1.1 octal number (493): write 493 for that number, or '0755' for the text",
        "f.yaml:4:4: d: 1:30 is a YAML 1.1 base-60 number (90): write 90 for that number, or '1:30' for the text",
        "f.yaml:5:4: e: 0b11 is a YAML 1.1 binary number (3): write 3 for that number, or '0b11' for the text",
    ]
    assert doc == {"a": REFUSED, "b": "0755", "c": 31, "d": REFUSED, "e": REFUSED, "f": 0, "g": "1e3", "h": 0, "i": "="}


def test_a_refused_value_is_reported_at_its_path_and_the_rest_is_still_read():
    doc, problems = read('x:\n  - ok\n  - "bad\\x1b"\n  - !!bool maybe\ny: {"k\\t": 1, k: 2}\n')
    assert problems == [
        "f.yaml:3:5: x[1]: contains the control character '\\x1b': names and values cannot hold control "
        "characters (U+0000-U+001F, U+007F-U+009F)",
        "f.yaml:4:5: x[2]: 'maybe' is not a valid bool",
        "f.yaml:5:5: y[\"k\\t\"]: contains the control character '\\t': names and values cannot hold control "
        "characters (U+0000-U+001F, U+007F-U+009F)",
    ]
    assert doc == {"x": ["ok", REFUSED, REFUSED], "y": {"k": 2}}


def test_a_top_level_that_is_not_a_mapping_is_reported_where_it_starts():
    assert read("# comment\n\n  text\n") == (
        None,
        ["f.yaml:3:3: the top level must be a mapping with keys such as 'domains', not a single value"],
    )
    assert read("- a\n")[1] == ["f.yaml:1:1: the top level must be a mapping with keys such as 'domains', not a list"]
