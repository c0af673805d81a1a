"""One `CliRunner` for every in-process CLI test, with stdout and stderr kept apart.

Click 8.1 (Debian 12's python3-click under typer 0.7) mixes stderr into ``result.stdout``
unless told ``mix_stderr=False``; click 8.2 removed that argument and always keeps them apart.
The tests assert which stream a message went to, so they must get the same split from both.
"""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

_CAN_SPLIT = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def cli_runner() -> CliRunner:
    return CliRunner(mix_stderr=False) if _CAN_SPLIT else CliRunner()
