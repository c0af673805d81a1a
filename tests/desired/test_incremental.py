"""The configuration cache (`desired.incremental`): checking only what changed gives exactly
what checking everything gives — the same Spec (positions included), warnings and errors —
for every edit, including edits meant to break the cut into domains.

Each test compares `check_config(path, store)` with `check_config(path)` (no cache) after each
edit, and says which way the cached check went (taken whole from the cache, only the changed
domains checked, or everything checked again), so the fast ways are known to be exercised.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vmreconcile.cache.store import CacheStore
from vmreconcile.desired import incremental
from vmreconcile.desired.load import check_config

HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"

BASE = f"""\
# a configuration with something of everything
version: 1
qmail:
  root: /var/qmail
vmailmgr:
  default-hardquota: 100 MiB
  separators: "@:"
domains:
  # the first domain
  one.example:
    base_user: vone
    wildcard: true
    domain_aliases: [one.example.net]
    options: {{default-msgsize: 10 MB, separators: "-"}}
    prune: true
    catch_all: me
    users:
      me:
        password: "{HASH}"
        aliases: [myself]
        forwards: [you@two.example]
        hard_quota: 1 GiB
        soft_quota: 2 GiB
        expires: 2027-06-30
      old:
        password: "$0$plaintext"
        personal: "Old User"
    aliases:
      info: [me, someone@elsewhere.example]
      quiet: {{forwards: []}}
  two.example:
    base_user: vtwo
    users:
      you:
        password: {{env: YOU_PASSWORD}}
        forwards: [friend]
        hard_quota: 500 MiB
      friend:
        password: unmanaged
        message_size_limit: 10 MB
        created: 2026-01-02T03:04:05Z

  three.example:
    base_user: vthree
    system_account: true
    rcpthosts_file: morercpthosts
    users:
      admin:
        password: null
        directory: ./users/Admin
        has_mailbox: true
        mailbox_enabled: false
        message_count_limit: 1000
passwords:
  scheme: sha512-crypt
history:
  keep: 20
"""


class Spy:
    """Which way each cached check went: 'hit' (all from the cache), 'reduced N' (N domains
    checked), 'full' (everything checked), several when one led to another."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[list[str]] = []
        check, full, reduced = incremental._Run.check, incremental._Run._full, incremental._Run._reduced

        def spy_check(run):
            self.runs.append([])
            result = check(run)
            if not self.runs[-1]:
                self.runs[-1].append("hit")
            return result

        def spy_full(run):
            self.runs[-1].append("full")
            return full(run)

        def spy_reduced(run, missing, parts, records):
            self.runs[-1].append(f"reduced {len(missing)}")
            return reduced(run, missing, parts, records)

        monkeypatch.setattr(incremental._Run, "check", spy_check)
        monkeypatch.setattr(incremental._Run, "_full", spy_full)
        monkeypatch.setattr(incremental._Run, "_reduced", spy_reduced)

    def way(self) -> str:
        runs, self.runs = self.runs, []
        return " / ".join(" then ".join(run) for run in runs)


def same(path: Path, store: CacheStore) -> None:
    """The cached check of ``path`` is exactly the check without a cache."""
    cold = check_config(path)
    warm = check_config(path, store)
    assert [str(d) for d in warm.errors] == [str(d) for d in cold.errors]
    assert [str(d) for d in warm.warnings] == [str(d) for d in cold.warnings]
    assert warm.spec == cold.spec
    if cold.spec is not None:
        assert warm.spec.size_spellings == cold.spec.size_spellings
        assert [[u.position for u in d.users] for d in warm.spec.domains] == [
            [u.position for u in d.users] for d in cold.spec.domains
        ]


@pytest.fixture
def store(tmp_path):
    with CacheStore.open(str(tmp_path / "cache")) as opened:
        assert opened is not None
        yield opened


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Path("mail.yaml")
    path.write_text(BASE)
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_unchanged_configuration_comes_whole_from_the_cache(config, store, monkeypatch):
    spy = Spy(monkeypatch)
    same(config, store)
    assert spy.way() == "full"  # the first check fills the cache
    assert check_config(config).warnings  # the base has warnings, which must come back too
    same(config, store)
    assert spy.way() == "hit"


@pytest.mark.parametrize(
    "old,new",
    [
        ('        personal: "Old User"', '        personal: "New Name"'),  # a value
        ("      friend:\n", "      newbie:\n        password: null\n      friend:\n"),  # lines added
        ("        message_count_limit: 1000\n", ""),  # lines removed, last domain
        ("        hard_quota: 500 MiB", "        hard_quota: 500 MB"),  # a spelling
        ("        soft_quota: 2 GiB\n", "        soft_quota: 512 MiB\n"),  # a warning goes away
    ],
)
def test_a_changed_domain_is_checked_alone(config, store, monkeypatch, old, new):
    spy = Spy(monkeypatch)
    same(config, store)
    edit(config, old, new)
    same(config, store)
    assert spy.way() == "full / reduced 1"
    same(config, store)
    assert spy.way() == "hit"


def test_a_domain_that_moves_down_keeps_its_cache_entry_and_gets_its_new_lines(config, store, monkeypatch):
    spy = Spy(monkeypatch)
    same(config, store)
    edit(config, "        aliases: [myself]\n", "        aliases: [myself]\n\n\n        # three more lines\n")
    same(config, store)  # two.example and three.example moved three lines down
    assert spy.way() == "full / reduced 1"
    warm = check_config(config, store)
    (three,) = [d for d in warm.spec.domains if d.name == "three.example"]
    assert three.position.line == BASE.splitlines().index("  three.example:") + 1 + 3


@pytest.mark.parametrize(
    "old,new",
    [
        ("    base_user: vtwo", "    base_user: vone"),  # a base user taken twice
        ("    domain_aliases: [one.example.net]", "    domain_aliases: [two.example]"),  # a name routed twice
        ("        forwards: [friend]", "        forwards: [me@one.example]"),  # a loop across domains
        ("      friend:\n", "      me:\n        password: null\n      friend:\n"),  # no problem: keys are per domain
    ],
)
def test_problems_across_domains_are_found_when_only_one_domain_changed(config, store, monkeypatch, old, new):
    same(config, store)
    spy = Spy(monkeypatch)
    edit(config, old, new)
    same(config, store)
    way = spy.way()
    cold = check_config(config)
    if cold.errors:
        assert way == "reduced 1 then full"  # the cached check found it across domains, then reported it
    else:
        assert way == "reduced 1"


@pytest.mark.parametrize(
    "old,new",
    [
        ('        personal: "Old User"', '        personal: "Old User'),  # a quote left open
        ('        personal: "Old User"', "        personal: [Old User"),  # a flow list left open
        ("  two.example:\n", "  one.example:\n"),  # a domain twice
        ("        password: null", "        password: plaintext"),  # a plain error
        ("    users:\n      you:", "    users:\n      you:\n        hard_quota: 1 XB"),
        ('        personal: "Old User"', "        personal: &name Old User"),  # an anchor
        ("      friend:\n", "\tfriend:\n"),  # a tab
        ("  two.example:\n", "  two.example: {base_user: vtwo}\n  xx.example:\n"),
        ("passwords:\n", "  stray: 1\npasswords:\n"),  # an indented line where the domains end
        ("passwords:\n", "  # a comment\n---\npasswords:\n"),  # a second document
        ('        personal: "Old User"', "        personal: |+\n          text\n"),  # kept line ends
        ("domains:\n", "domains: # comment\n"),
        ("vmailmgr:\n", "vmailmgr:\n  default-msgsize: 1 KB\n"),  # outside the domains: all again
    ],
)
def test_edits_that_break_or_escape_the_cut_give_the_same_result(config, store, monkeypatch, old, new):
    same(config, store)
    edit(config, old, new)
    same(config, store)
    same(config, store)


def test_an_edit_of_the_part_outside_the_domains_checks_everything(config, store, monkeypatch):
    spy = Spy(monkeypatch)
    same(config, store)
    edit(config, "  keep: 20", "  keep: 30")
    same(config, store)
    assert spy.way() == "full / full"


def test_domains_reordered_and_removed(config, store, monkeypatch):
    spy = Spy(monkeypatch)
    same(config, store)
    text = config.read_text()
    start, middle = text.index("  two.example:"), text.index("  three.example:")
    end = text.index("passwords:")
    config.write_text(text[:start] + text[middle:end] + text[start:middle] + text[end:])
    same(config, store)
    assert spy.way() == "full / hit"  # the same chunks in another order: nothing to check again
    config.write_text(text[:start] + text[middle:])
    same(config, store)


def test_a_configuration_directory_is_cut_file_by_file(tmp_path, store, monkeypatch):
    spy = Spy(monkeypatch)
    monkeypatch.chdir(tmp_path)
    directory = Path("conf")
    directory.mkdir()
    head, domains = BASE.split("domains:\n")
    first, rest = domains.split("  two.example:\n")
    body, tail = rest.split("passwords:\n")
    (directory / "00-global.yaml").write_text(head + "passwords:\n" + tail)
    (directory / "10-one.yaml").write_text("domains:\n" + first)
    (directory / "20-rest.yaml").write_text("domains:\n  two.example:\n" + body)
    same(directory, store)
    same(directory, store)
    assert spy.way() == "full / hit"
    edit(directory / "20-rest.yaml", "        message_count_limit: 1000", "        message_count_limit: 2000")
    same(directory, store)
    assert spy.way() == "reduced 1"
    edit(directory / "20-rest.yaml", "  three.example:", "  one.example:")  # defined in two files
    same(directory, store)


def test_file_secrets_follow_the_current_directory(config, store, monkeypatch, tmp_path):
    edit(config, "        password: {env: YOU_PASSWORD}", "        password: {file: secrets/you}")
    same(config, store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(config, elsewhere / "mail.yaml")
    monkeypatch.chdir(elsewhere)
    same(Path("mail.yaml"), store)  # another directory: the secret's absolute path differs
    warm = check_config(Path("mail.yaml"), store)
    (you,) = [u for d in warm.spec.domains for u in d.users if u.name == "you"]
    assert you.password.value == os.path.join(elsewhere, "secrets/you")


def test_a_tampered_entry_is_not_used(config, store, monkeypatch):
    same(config, store)
    (name,) = [n for n in store.names() if n.startswith("config-")]
    body = store.load(name)
    fmt, context, head, records = body
    (some,) = [r for r in records.values() if r[0][0] == "two.example"]
    encoded = list(some[0])
    encoded[1] = 12345  # a base user that is not a string
    records = {k: ((tuple(encoded), *v[1:]) if v is some else v) for k, v in records.items()}
    store.save(name, (fmt, context, head, records))
    spy = Spy(monkeypatch)
    same(config, store)
    assert spy.way() == "reduced 1"  # that domain was checked again


CHARACTERS = st.sampled_from(list("\"'[]{}:#&*|>-,? x\t") + ["\n", "\n  ", ": ", " #"])
LINES = st.sampled_from(
    [
        "",
        "#",
        "  # comment",
        "  x.example:",
        "    base_user: vx",
        '        personal: "a',
        '        personal: b"',
        "        personal: [a,",
        "        personal: {a: 1",
        "  }",
        "      ]",
        "      new:",
        "        password: null",
        "        hard_quota: 2 GiB",
        "        forwards: [me@one.example]",
        "        personal: &a x",
        "        personal: *a",
        "        personal: |",
        "          text",
        "---",
        "...",
        "z: 1",
        "   three.example:",
        "\tx: 1",
        "        personal: 'multi",
        "  line'",
        '"quoted": 1',
        "? complex",
        "  - item",
        "  d9.example: [",
        "]",
        "  d8.example: |+",
        "        personal: x",
        "      me:",
        "  one.example:",
        "    users:",
        "domains:",
        "        password: {env: X}",
        "    base_user: vone",
    ]
)


@settings(
    max_examples=int(os.environ.get("VMRECONCILE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_line_edits_give_the_same_result_as_checking_everything(tmp_path, monkeypatch, data):
    """Whatever lines are inserted, removed or replaced, the cached check equals the whole one."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # each example starts from an empty cache
    with monkeypatch.context() as patch, CacheStore.open(str(work / "cache")) as store:
        assert store is not None
        patch.chdir(work)
        spy = Spy(patch)
        path = Path("fuzz.yaml")
        lines = BASE.splitlines()
        path.write_text(BASE)
        check_config(path, store)  # fill the cache from the base
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(lines)))
            action = data.draw(st.sampled_from(["insert", "replace", "delete", "character"]))
            if action == "insert":
                lines.insert(at, data.draw(LINES))
            elif action == "character" and at < len(lines):
                column = data.draw(st.integers(0, len(lines[at])))
                lines[at] = lines[at][:column] + data.draw(CHARACTERS) + lines[at][column:]
            elif lines and at < len(lines):
                if action == "replace":
                    lines[at] = data.draw(LINES)
                else:
                    del lines[at]
            path.write_text("\n".join(lines) + "\n")
            spy.way()
            same(path, store)
            event(spy.way())
