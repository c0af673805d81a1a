"""The ``vmreconcile`` command of the checkout under test, for tests that run it as a program.

In the venv it is the console script beside the interpreter (an editable install of this
checkout). Under Debian's ``/usr/bin/python3`` with Debian's ``python3-*`` libraries (the
second CI run) there is no console script of the checkout, and ``/usr/bin/vmreconcile`` is the
installed package, if any, not this code: so a small script that runs this checkout's CLI
with this interpreter is written to a private directory, removed again when the tests exit.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_VENV_SCRIPT = Path(sys.executable).with_name("vmreconcile")


def _checkout_script_dir() -> Path:
    if sys.prefix != sys.base_prefix and _VENV_SCRIPT.is_file():
        return _VENV_SCRIPT.parent
    directory = Path(tempfile.mkdtemp(prefix="vmreconcile-checkout-cli-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    directory.chmod(0o755)  # tests run it as throwaway users too
    script = directory / "vmreconcile"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from vmreconcile.cli.main import main\n"
        "main()\n"
    )
    script.chmod(0o755)
    return directory


#: A directory to put first on PATH, and the command in it.
CLI_DIR = _checkout_script_dir()
CLI = CLI_DIR / "vmreconcile"
