"""The real adoption path: live -> export YAML -> load_spec -> plan/apply (desired layer included)."""

from __future__ import annotations

import pytest

from tests.conftest import STEPS, build_step_root, step_dir
from tests.plan.reconcile_helpers import step_root_with_empty_home
from vmreconcile.apply.execute import execute
from vmreconcile.desired.load import load_spec
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.workflow import plan_on_host

export = pytest.importorskip("vmreconcile.desired.export", reason="desired/export.py not in this checkout yet")

NOW = 1_900_000_000


def exported_spec(step, tmp_path):
    source = tmp_path / "source"
    build_step_root(step, source)
    config = tmp_path / "exported.yaml"
    config.write_text(export.export_yaml(read_live_state(Host(source))))
    return source, load_spec(config)


@pytest.mark.parametrize("step", STEPS)
def test_exported_step_plans_no_changes_on_its_own_host(step, tmp_path):
    source, spec = exported_spec(step, tmp_path)
    plan, _ = plan_on_host(Host(source), spec, now=NOW)
    assert plan.changes == ()


@pytest.mark.parametrize("step", STEPS)
def test_exported_step_applied_to_an_empty_home_rebuilds_the_table_byte_for_byte(step, tmp_path):
    _, spec = exported_spec(step, tmp_path)
    target = tmp_path / "target"
    home = step_root_with_empty_home(step, target)
    plan, _ = plan_on_host(Host(target), spec, now=NOW)
    assert execute(plan, Host(target)).errors == []
    assert (home / "passwd.cdb").read_bytes() == (step_dir(step) / "passwd.cdb").read_bytes()
    assert plan_on_host(Host(target), spec, now=NOW + 5)[0].changes == ()
