"""The cost of reading a configuration is bounded by its size: aliases, nesting, file size, odd files.

Each limit is asserted by its error and by the work measured (values counted, CPU and memory of
a subprocess under rlimits), never by a wall-clock timeout.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from vmreconcile.desired import load, yamlread
from vmreconcile.desired.load import check_config
from vmreconcile.desired.yamlread import ALIAS_BASE, ALIAS_FACTOR, MAX_DEPTH, YList, YMap, read_yaml

INVALID = Path(__file__).resolve().parents[1] / "data" / "invalid"


def read(text: str):
    value, problems = read_yaml(text.encode(), "f.yaml")
    return value, [str(p) for p in problems]


def shared_list(items: int, uses: int) -> str:
    """A list of ``items`` scalars, then a list using it ``uses`` times: it is written out with
    items + 5 values (root, two keys, two lists) and its aliases stand for uses * (items + 1)."""
    return "l: &l [" + ", ".join(["x"] * items) + "]\nm: [" + ", ".join(["*l"] * uses) + "]\n"


def test_aliases_may_stand_for_the_documented_number_of_values_and_not_one_list_more():
    written = 999 + 5
    allowed = ALIAS_BASE + ALIAS_FACTOR * written  # 102,008
    fits = allowed // 1000  # 102 uses of a 1,000-value list
    value, problems = read(shared_list(999, fits))
    assert problems == [] and len(value["m"]) == fits and value["m"][0] is value["l"]
    value, problems = read(shared_list(999, fits + 1))
    assert value is None
    assert problems == [
        f"f.yaml:2:{5 + 4 * fits}: aliases stand for too many values ({(fits + 1) * 1000:,} by *l, more than "
        f"{ALIAS_BASE:,} plus {ALIAS_FACTOR} per value written out): write the values out"
    ]


def test_alias_expansion_is_measured_once_per_container(monkeypatch):
    calls = []
    real = yamlread._measure

    def counting(value, memo):
        calls.append(1)
        return real(value, memo)

    monkeypatch.setattr(yamlread, "_measure", counting)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    value, problems = read("\n".join(lines) + "\n")
    assert value is None and "aliases stand for too many values (101,218 by *a3" in problems[0]
    assert len(calls) < 100  # 10**9 values described, a few dozen measured


def test_the_repr_of_a_shared_structure_does_not_grow_with_its_expansion():
    value, problems = read(shared_list(999, 100))
    assert problems == []
    assert repr(value) == "<mapping of 2 keys at f.yaml:1:1>"
    assert repr(value["m"]) == "<list of 100 items at f.yaml:2:4>"


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_nesting_is_capped_before_anything_recurses_over_it(depth):
    value, problems = read("a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n")  # the root is level 1
    if depth <= MAX_DEPTH:
        assert problems == [] and isinstance(value["a"], YList)
    else:
        assert problems == [f"f.yaml:1:{3 + MAX_DEPTH}: the YAML is nested deeper than {MAX_DEPTH} levels"]


def test_nesting_through_aliases_counts_at_its_expanded_depth():
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH)]
    value, problems = read("\n".join(lines) + "\n")
    assert problems == [
        f"f.yaml:{MAX_DEPTH}:12: the YAML is nested deeper than {MAX_DEPTH} levels "
        f"once alias *a{MAX_DEPTH - 2} is expanded"
    ]
    value, problems = read("\n".join(lines[:-1]) + "\n")
    assert problems == [] and isinstance(value, YMap)


def test_a_hundred_thousand_brackets_are_one_error_not_a_recursion_error():
    value, problems = read("domains: " + "[" * 100_000 + "\n")
    assert value is None
    assert problems in (
        [f"f.yaml:1:{10 + MAX_DEPTH - 1}: the YAML is nested deeper than {MAX_DEPTH} levels"],
        ["f.yaml:1:1009: YAML syntax error: exceeded maximum nesting depth"],  # a libyaml with its own cap (1,000)
    )


HOSTILE = [
    "alias-billion-laughs.yaml",
    "alias-laughs-under-users.yaml",
    "alias-shared-under-the-cap.yaml",
    "nesting-deep-mappings.yaml",
    "nesting-deep-through-aliases.yaml",
    "nesting-too-deep.yaml",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_files_are_refused_within_one_cpu_second_and_256_mib(name):
    """Under rlimits, a blow-up kills the process (SIGXCPU, MemoryError) instead of passing."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (4, 4))  # start-up (imports) takes most of it
        resource.setrlimit(resource.RLIMIT_AS, (768 * 2**20, 768 * 2**20))

    code = (
        "import sys, resource\n"
        "from vmreconcile.desired.load import check_config\n"
        "before = resource.getrusage(resource.RUSAGE_SELF)\n"
        "errors = check_config(sys.argv[1]).errors\n"
        "after = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(len(errors), after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, after.ru_maxrss)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, name], cwd=INVALID, capture_output=True, text=True, preexec_fn=limits
    )
    assert result.returncode == 0, result.stderr
    errors, cpu, maxrss_kib = result.stdout.split()
    assert int(errors) >= 1
    assert float(cpu) < 1.0
    assert int(maxrss_kib) < 256 * 1024


def test_the_configuration_size_is_capped_across_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_CONFIG_BYTES", 100)
    (tmp_path / "a.yaml").write_text("# " + "a" * 57 + "\n")  # 60 bytes
    (tmp_path / "b.yaml").write_text("# " + "b" * 57 + "\n")
    assert [str(e) for e in check_config(tmp_path).errors] == [
        f"{tmp_path}/b.yaml:1:1: cannot read: the configuration's files hold more than 100 bytes in all"
    ]
    (tmp_path / "b.yaml").write_text("# " + "b" * 37 + "\n")  # 40 bytes: 100 in all
    assert check_config(tmp_path).errors == []


def test_the_documented_cap_fits_four_times_the_100000_user_example():
    assert load.MAX_CONFIG_BYTES == 64 * 2**20


def test_a_fifo_named_as_a_config_file_is_refused_not_waited_for(tmp_path):
    fifo = tmp_path / "mail.yaml"
    os.mkfifo(fifo)
    assert [str(e) for e in check_config(fifo).errors] == [f"{fifo}:1:1: cannot read: not a regular file (a FIFO)"]
    (tmp_path / "other.yaml").write_text("domains: {}\n")
    assert [str(e) for e in check_config(tmp_path).errors] == [f"{fifo}:1:1: cannot read: not a regular file (a FIFO)"]


def test_a_device_behind_a_config_name_is_refused_not_read(tmp_path):
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    assert [str(e) for e in check_config(link).errors] == [
        f"{link}:1:1: cannot read: not a regular file (a character device)"
    ]
