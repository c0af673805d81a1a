"""Forwarding loops: found in linear time without recursion, reported once per loop, where it starts."""

from __future__ import annotations

import sys
import time

from vmreconcile.desired.load import check_config
from vmreconcile.desired.loops import describe, find_loops


def chain(n: int, closed: bool) -> dict:
    edges = {("d", f"a{i}"): [(("d", f"a{i + 1}"), i)] for i in range(n - 1)}
    if closed:
        edges[("d", f"a{n - 1}")] = [(("d", "a0"), n - 1)]
    return edges


def test_no_loop_in_a_tree_of_forwards():
    edges = {("d", "a"): [(("d", "b"), 0), (("d", "c"), 1)], ("d", "b"): [(("d", "c"), 2)]}
    assert find_loops(edges) == []


def test_a_self_forward_is_a_loop_of_one_edge():
    assert find_loops({("d", "me"): [(("d", "me"), 7)]}) == [[(("d", "me"), ("d", "me"), 7)]]


def test_each_loop_is_reported_once_from_its_earliest_edge():
    edges = {
        ("d", "b"): [(("d", "a"), 5)],
        ("d", "a"): [(("d", "b"), 2)],
        ("d", "c"): [(("d", "e"), 9)],
        ("d", "e"): [(("d", "c"), 8)],
    }
    loops = find_loops(edges)
    assert sorted(loops) == [
        [(("d", "a"), ("d", "b"), 2), (("d", "b"), ("d", "a"), 5)],
        [(("d", "e"), ("d", "c"), 8), (("d", "c"), ("d", "e"), 9)],
    ]


def test_a_chain_of_100000_without_recursion_in_linear_time():
    limit = sys.getrecursionlimit()
    start = time.process_time()
    assert find_loops(chain(100_000, closed=False)) == []
    open_time = time.process_time() - start
    loops = find_loops(chain(100_000, closed=True))
    assert len(loops) == 1 and len(loops[0]) == 100_000 and loops[0][0][2] == 0
    assert sys.getrecursionlimit() == limit
    assert describe(loops[0], "d") == "a0 -> a1 -> a2 -> a3 -> (99993 more) -> a99997 -> a99998 -> a99999 -> a0"
    assert open_time < 5  # CPU seconds for 100,000 edges: linear (a quadratic search takes minutes)


def test_names_of_other_domains_are_shown_with_their_domain():
    loop = [(("a.example", "x"), ("b.example", "y"), 0), (("b.example", "y"), ("a.example", "x"), 1)]
    assert describe(loop, "a.example") == "x -> y@b.example -> x"


def test_a_deep_alias_chain_in_yaml_is_one_error_not_a_recursion_error(tmp_path):
    n = 20_000
    body = "".join(f"      a{i}: a{i + 1}\n" for i in range(n)) + f"      a{n}: a0\n"
    path = tmp_path / "deep.yaml"
    path.write_text(f"domains:\n  d.example:\n    base_user: u\n    aliases:\n{body}")
    errors = [str(e) for e in check_config(path).errors]
    assert errors == [
        f"{path}:5:11: domains[\"d.example\"].aliases.a0: forward 'a1' makes a mail loop: "
        f"a0 -> a1 -> a2 -> a3 -> (19994 more) -> a19998 -> a19999 -> a20000 -> a0"
    ]


def test_forwards_to_entries_the_yaml_does_not_define_are_not_followed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "domains:\n  d.example:\n    base_user: u\n    aliases:\n"
        "      a: b@elsewhere.example\n      b: [ops@, a@d.example]\n"
    )
    assert check_config(path).errors == []
