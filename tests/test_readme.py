"""The README's examples are real: its configuration validates, its command blocks run as written.

Blocks that run in a clone are run here (the install block by tests/fleet/test_fleet_release.py,
which needs the package index); blocks that need a mail host, a config repository's CI or an
Ansible inventory are run by the fleet tests in those settings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def readme_block(first_command: str) -> str:
    """The README's ``sh`` block whose first command starts with ``first_command``."""
    found = [b for b in readme_blocks("sh") if b.lstrip().startswith(first_command)]
    assert len(found) == 1, f"no single README sh block starts with {first_command!r}"
    return found[0]


def test_the_readme_yaml_example_validates(tmp_path):
    blocks = readme_blocks("yaml")
    assert blocks, "the README shows a configuration"
    config = tmp_path / "readme.yaml"
    config.write_text(blocks[0])
    result = subprocess.run(
        [sys.executable, "-m", "vmreconcile", "validate", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid: 1 domain, 1 user, 3 aliases" in result.stdout


def test_the_first_look_block_runs_in_a_clone(tmp_path):
    """As written, but with bin/demo's own last step (bin/setup-env would reinstall the package
    into the venv the other tests are using) and a private demo directory."""
    console_script = REPO / ".venv" / "bin" / "vmreconcile"
    if Path(sys.executable).parent != console_script.parent or not console_script.exists():
        pytest.skip("the block uses the clone's .venv (made by bin/demo): it runs in the venv run of the suite")
    block = readme_block("bin/demo /tmp/vmr-demo")
    demo_root = tmp_path / "vmr-demo"
    script = block.replace("bin/demo ", f"{console_script} demo ").replace("/tmp/vmr-demo", str(demo_root))
    env = {k: v for k, v in os.environ.items() if k not in ("VMRECONCILE_ROOT", "VIRTUAL_ENV")}
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "examples/howto.yaml: valid: 1 domain, 1 user, 2 aliases" in done.stdout
    after_demo = done.stdout.split("examples/howto.yaml: valid:")[-1]
    assert after_demo.count("No changes. The host matches the configuration.") == 2  # plan, then apply


def test_no_page_claims_vmreconcile_is_on_a_package_index():
    """vmreconcile is published nowhere: every install path is a built wheel or a git URL."""
    pages = [REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("examples/**/*"), *REPO.glob("ansible/**/*")]
    claims = re.compile(r"pip install (-[-\w]+ )*[\"']?vmreconcile\b(?![-\w/.])|vmreconcile==")
    found = [
        f"{page.relative_to(REPO)}: {match.group(0)}"
        for page in pages
        if page.is_file() and page.suffix not in (".gz", ".pyc")
        for match in claims.finditer(page.read_text(errors="replace"))
    ]
    assert found == []
