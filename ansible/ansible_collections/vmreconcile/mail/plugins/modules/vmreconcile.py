#!/usr/bin/python
"""Ansible module ``vmreconcile.mail.vmreconcile``: make a mail host match a vmreconcile configuration.

The module drives the ``vmreconcile`` command on the managed host through its JSON output
instead of importing the package: the Python Ansible runs modules with need not be the one
vmreconcile is installed into (a venv, pipx, a wheel under /opt), and the CLI's JSON plan
(``format_version`` 1) is the stable contract. Normal mode plans with ``--out`` and applies
exactly that saved plan (``apply --plan``), so what the module reports is what was written,
and a host that moved in between is refused instead of surprising anyone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: vmreconcile
short_description: Reconcile VMailMgr virtual mail domains with a vmreconcile YAML configuration
version_added: "0.1.0"
description:
  - Runs C(vmreconcile plan) on the managed host and, unless in check mode, applies exactly that
    plan with C(vmreconcile apply --plan FILE --yes).
  - C(changed) is true exactly when the plan had changes. The plan's changes are returned as data,
    with the C(part) each touches (C(control), C(tables), C(runtime-config)) so handlers can react.
  - In diff mode every change is shown as a before/after pair; password hashes are masked by
    vmreconcile itself (scheme and a short sha256 fingerprint).
  - vmreconcile must be installed on the managed host; the module only needs the executable.
options:
  config:
    description:
      - Path on the managed host of the YAML configuration (a file, or a directory whose
        C(*.yaml) files are merged).
      - Exactly one of O(config) and O(content) is required.
    type: path
  content:
    description:
      - The configuration as inline YAML. It is written to a private temporary file on the managed
        host; C({file:}) secrets in it must then use absolute paths.
    type: str
  root:
    description:
      - Treat this directory as C(/) (vmreconcile's global C(--root)), e.g. for a throwaway tree.
    type: path
  force:
    description: Override vmreconcile's safety brake (more than 30% of a domain's entries changed or deleted).
    type: bool
    default: false
  purge_mailboxes:
    description: Also delete the maildirs of deleted users (C(cur), C(new), C(tmp) only).
    type: bool
    default: false
  executable:
    description:
      - The vmreconcile command. Default C(vmreconcile) from C(PATH) (also looked for in
        C(/usr/local/bin)).
    type: path
  lock_timeout:
    description: Seconds C(apply) waits for vmreconcile's global lock (vmreconcile's default when unset).
    type: float
attributes:
  check_mode:
    support: full
    description: Plans only; nothing on the host is written.
  diff_mode:
    support: full
notes:
  - C({env:NAME}) secrets are read from the environment of the module; set them with the task's
    C(environment) keyword (e.g. from Ansible Vault).
  - Bad configurations fail with vmreconcile's validation errors, one C(file:line:col) per line.
author:
  - vmreconcile developers
"""

EXAMPLES = r"""
- name: Make the mail host match the configuration pushed from git
  vmreconcile.mail.vmreconcile:
    config: /etc/vmreconcile/config
  register: mail

- name: Reload qmail-send only when qmail's control files changed
  ansible.builtin.debug:
    msg: "control files changed"
  changed_when: "'control' in mail.parts"
  notify: Reload qmail-send

- name: Inline configuration on a throwaway tree, check mode with diff
  vmreconcile.mail.vmreconcile:
    root: /tmp/demo
    content: |
      domains:
        example.org:
          base_user: vexample
          users:
            me: {password: {env: ME_PASSWORD}}
  environment:
    ME_PASSWORD: "{{ vault_me_password }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
summary:
  description: Counts of the plan.
  returned: success
  type: dict
  sample: {add: 1, change: 2, destroy: 0}
summary_line:
  description: The plan summary as vmreconcile prints it.
  returned: success
  type: str
  sample: "Plan: 1 to add, 2 to change, 0 to destroy."
changes:
  description: The plan's changes (action, type, address, part, before, after), hashes masked.
  returned: success
  type: list
  elements: dict
parts:
  description: The distinct parts the changes touch, sorted (control, runtime-config, tables).
  returned: success
  type: list
  elements: str
  sample: [control, tables]
notes:
  description: vmreconcile's notes on the plan (kept maildirs, secrets not verifiable offline, ...).
  returned: success
  type: list
  elements: str
brake:
  description: Safety-brake messages; non-empty means apply refuses unless O(force).
  returned: success
  type: list
  elements: str
messages:
  description: What apply reported (reload commands run or to run, kept directories, ...).
  returned: when applied
  type: list
  elements: str
errors:
  description: "The configuration errors, one C(file:line:col: message) each."
  returned: failure on a bad configuration
  type: list
  elements: str
"""

#: The plan document versions this module understands.
SUPPORTED_FORMAT_VERSIONS = (1,)
#: A diagnostic of vmreconcile's YAML checks: ``file:line:col: message``.
DIAGNOSTIC = re.compile(r"^.+:\d+:\d+: ")
#: vmreconcile's own one-line error prefix on stderr.
PREFIX = "vmreconcile: "
CONTENT_NAME = "<content>"


def argument_spec() -> dict:
    return dict(
        config=dict(type="path"),
        content=dict(type="str"),
        root=dict(type="path"),
        force=dict(type="bool", default=False),
        purge_mailboxes=dict(type="bool", default=False),
        executable=dict(type="path"),
        lock_timeout=dict(type="float"),
    )


class Runner:
    """Runs vmreconcile with the global options and turns its failures into fail_json calls."""

    def __init__(self, module: AnsibleModule, executable: str, config_name: str | None, shown_name: str) -> None:
        self.module = module
        self.base = [executable]
        if module.params["root"]:
            self.base += ["--root", module.params["root"]]
        self.config_name = config_name
        self.shown_name = shown_name

    def shown(self, text: str) -> str:
        """Name inline content ``<content>`` in messages instead of its temporary path."""
        if self.config_name and self.config_name != self.shown_name:
            return text.replace(self.config_name, self.shown_name)
        return text

    def run(self, args: list[str]) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command(
            self.base + args, check_rc=False, environ_update={"NO_COLOR": "1", "LC_ALL": "C.UTF-8"}
        )
        return rc, self.shown(out), self.shown(err)

    def fail(self, what: str, rc: int, out: str, err: str, **extra) -> None:
        """Fail with vmreconcile's own words: the diagnostics first, else its error lines."""
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if DIAGNOSTIC.match(line)]
        others = [line[len(PREFIX) :] if line.startswith(PREFIX) else line for line in lines if line not in errors]
        message = "\n".join(errors + others) or f"{what} failed with exit code {rc}"
        self.module.fail_json(msg=message, errors=errors, rc=rc, stdout=out, stderr=err, **extra)


def plan_args(config: str, params: dict, out: str | None) -> list[str]:
    args = ["plan", config, "--format", "json", "--detailed-exitcode"]
    if params["purge_mailboxes"]:
        args.append("--purge-mailboxes")
    if out is not None:
        args += ["--out", out]
    return args


def make_plan(runner: Runner, config: str, out: str | None) -> dict:
    """The plan document; fails the task on any vmreconcile error (exit 1) or unknown format."""
    rc, stdout, stderr = runner.run(plan_args(config, runner.module.params, out))
    if rc not in (0, 2):
        runner.fail("vmreconcile plan", rc, stdout, stderr)
    try:
        plan = json.loads(stdout)
    except ValueError:
        runner.fail("vmreconcile plan (unreadable JSON)", rc, stdout, stderr)
    if plan.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        runner.module.fail_json(
            msg=f"vmreconcile printed plan format_version {plan.get('format_version')!r}; "
            f"this module understands {SUPPORTED_FORMAT_VERSIONS}: update the collection"
        )
    if bool(plan["changes"]) != (rc == 2):
        runner.module.fail_json(msg=f"vmreconcile plan exit code {rc} contradicts its {len(plan['changes'])} change(s)")
    return plan


def result_of(plan: dict) -> dict:
    """The task result for a plan: everything a playbook needs to branch on, as data."""
    summary = plan["summary"]
    changes = plan["changes"]
    return dict(
        changed=bool(changes),
        summary=summary,
        summary_line=f"Plan: {summary['add']} to add, {summary['change']} to change, {summary['destroy']} to destroy.",
        changes=changes,
        parts=sorted({c["part"] for c in changes}),
        notes=plan.get("notes", []),
        brake=plan.get("brake", []),
    )


def _fields(values: dict) -> str:
    return "".join(f"{name}: {json.dumps(value, ensure_ascii=False)}\n" for name, value in values.items())


def diff_of(changes: list[dict]) -> list[dict]:
    """One before/after pair per change, as Ansible's diff callback prints them.

    The values come from the plan, where vmreconcile already replaced every hash with its
    scheme and fingerprint, so nothing crackable reaches the log.
    """
    out = []
    for change in changes:
        header = f"{change['action']} {change['type']} {change['address']} (part {change['part']})"
        out.append(
            dict(
                before_header=header,
                after_header=header,
                before=_fields(change["before"]),
                after=_fields(change["after"]),
            )
        )
    return out


def apply_plan(runner: Runner, config: str, plan_file: str, plan: dict, result: dict) -> None:
    """Apply the saved plan; on failure tell whether anything was written (re-plan, compare state)."""
    params = runner.module.params
    args = ["apply", "--plan", plan_file, "--yes"]
    if params["force"]:
        args.append("--force")
    if params["purge_mailboxes"]:
        args.append("--purge-mailboxes")
    if params["lock_timeout"] is not None:
        args += ["--lock-timeout", str(params["lock_timeout"])]
    rc, stdout, stderr = runner.run(args)
    if rc == 0:
        result["messages"] = _apply_messages(stdout)
        return
    after_rc, after_out, _ = runner.run(plan_args(config, params, None))
    moved = True
    if after_rc in (0, 2):
        with contextlib.suppress(ValueError):
            moved = json.loads(after_out).get("live_checksum") != plan.get("live_checksum")
    result["changed"] = moved
    runner.fail(
        "vmreconcile apply", rc, stdout, stderr, **{k: v for k, v in result.items() if k != "changed"}, changed=moved
    )


def _apply_messages(stdout: str) -> list[str]:
    """Apply's own messages: its output after the plan rendering (which the result has as data).

    The rendering starts and ends with the ``Plan: ...`` totals; what follows the last one is
    apply's.
    """
    lines = stdout.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Plan: "):
            return [m for m in lines[index + 1 :] if m.strip()]
    return [m for m in lines if m.strip()]


def find_executable(module: AnsibleModule) -> str:
    if module.params["executable"]:
        return module.params["executable"]
    return module.get_bin_path("vmreconcile", required=True, opt_dirs=["/usr/local/bin"])


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("config", "content")],
        required_one_of=[("config", "content")],
        supports_check_mode=True,
    )
    executable = find_executable(module)
    workdir = tempfile.mkdtemp(prefix="vmreconcile-ansible-")
    os.chmod(workdir, 0o700)
    try:
        if module.params["content"] is not None:
            config = os.path.join(workdir, "config.yaml")
            with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
                fh.write(module.params["content"])
            runner = Runner(module, executable, config, CONTENT_NAME)
        else:
            config = module.params["config"]
            runner = Runner(module, executable, None, config)
        plan_file = None if module.check_mode else os.path.join(workdir, "plan.json")
        plan = make_plan(runner, config, plan_file)
        result = result_of(plan)
        if module._diff:
            result["diff"] = diff_of(plan["changes"])
        if result["changed"] and not module.check_mode:
            apply_plan(runner, config, plan_file, plan, result)
        module.exit_json(**result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
