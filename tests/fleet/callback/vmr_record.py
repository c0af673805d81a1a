"""Test-only Ansible callback: append every task result to the JSON-lines file $VMR_RECORD_FILE.

The fleet tests assert on what Ansible itself saw (changed, failed, skipped, the module's
return values, which handlers ran) instead of scraping the screen output, and this needs no
collection beyond ansible-core.
"""

from __future__ import annotations

import json
import os

from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: vmr_record
type: aggregate
short_description: record task results as JSON lines (vmreconcile tests)
description: Appends one JSON object per task result to the file named by VMR_RECORD_FILE.
requirements: [whitelist in configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vmr_record"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result, status: str) -> None:
        path = os.environ.get("VMR_RECORD_FILE")
        if not path:
            return
        task = result._task
        data = result._result
        entry = {
            "task": task.name or task.get_name(),  # without the role's name in front
            "handler": isinstance(task, Handler),
            "status": status,
            "changed": bool(data.get("changed", False)),
            "result": data,
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._record(result, "skipped")
