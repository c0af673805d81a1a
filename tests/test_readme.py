"""The README's configuration example is a real, valid configuration."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_readme_yaml_example_validates(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks, "the README shows a configuration"
    config = tmp_path / "readme.yaml"
    config.write_text(blocks[0])
    result = subprocess.run(
        [sys.executable, "-m", "vmreconcile", "validate", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid: 1 domain, 1 user, 3 aliases" in result.stdout
