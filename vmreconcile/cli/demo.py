"""``vmreconcile demo [DIR]``: the whole workflow on a throwaway root, no qmail or VMailMgr needed.

Builds DIR (default: a new temporary directory) as a ``--root`` tree for ``examples/howto.yaml``
(its own ``etc/passwd`` naming each base user with the current uid/gid, so no chown is needed
when not root; homes inside DIR), then runs validate -> plan -> apply -> plan and prints each
step. The second plan must show no changes: that is the point of the demo.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import typer

from ..apply.execute import execute
from ..apply.lock import global_lock
from ..desired.load import check_config
from ..desired.semantics import summary
from ..desired.spec import Spec
from ..host import Host
from ..plan.render import render_text
from ..resources import examples_dir
from ..workflow import plan_on_host
from .common import colour_wanted, command_line, optional_metavar, shown_path
from .plan import PLAN_ERRORS, error_text, fail, style_for_tty

EXAMPLE = "howto.yaml"
DEMO_MARKER = ".vmreconcile-demo"


def find_example(name: str = EXAMPLE) -> Path:
    """The example configuration ``name``, through the package's one resource lookup.

    ``vmreconcile/examples`` links to the repository's ``examples/`` and is package data in the
    wheel (`vmreconcile.resources`), so this works in a checkout and when installed.
    """
    path = examples_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"example {name} not found in {examples_dir()}")
    return path


def build_demo_root(root: Path, spec: Spec) -> None:
    """A minimal host under ``root``: passwd with the base users, /etc/vmailmgr, qmail control."""
    uid, gid = os.getuid(), os.getgid()
    (root / "etc" / "vmailmgr").mkdir(parents=True, exist_ok=True)
    users = sorted({d.base_user for d in spec.domains})
    (root / "etc" / "passwd").write_text(
        "".join(f"{u}:x:{uid}:{gid}:demo base user:/home/{u}:/bin/sh\n" for u in users)
    )
    (root / "etc" / "vmailmgr" / "qmail-root").write_text(spec.qmail_root.rstrip("/") + "\n")
    control = root / spec.qmail_root.strip("/") / "control"
    control.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("me", "mx.demo.test\n"),
        ("locals", "localhost\nmx.demo.test\n"),
        ("rcpthosts", "localhost\nmx.demo.test\n"),
    ):
        if not (control / name).exists():
            (control / name).write_text(content)
    for user in users:
        home = root / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
    (root / DEMO_MARKER).write_text("made by vmreconcile demo; safe to delete\n")


def _step(number: int, title: str) -> None:
    typer.echo("")
    heading = f"== {number}. {title}"
    typer.echo(typer.style(heading, bold=True) if colour_wanted(sys.stdout) else heading)


def demo(
    directory: Path | None = typer.Argument(
        None, metavar=optional_metavar("DIR"), help="Where to build the throwaway root (default: a new temp dir)."
    ),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="Another configuration instead of examples/howto.yaml."
    ),
) -> None:
    """Run validate -> plan -> apply -> plan on a throwaway root built from examples/howto.yaml.

    Example: vmreconcile demo /tmp/vmr-demo && vmreconcile --root /tmp/vmr-demo show
    """
    try:
        example = config or find_example()
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    root = directory or Path(tempfile.mkdtemp(prefix="vmreconcile-demo-"))
    if root.exists() and any(root.iterdir()) and not (root / DEMO_MARKER).exists():
        raise fail(f"{root} is not empty and not an earlier demo root; give an empty or new directory")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()

    _step(1, f"validate {example}")
    result = check_config(example)
    for diagnostic in result.errors + result.warnings:
        typer.echo(str(diagnostic))
    if result.errors or result.spec is None:
        raise fail(f"{example}: invalid")
    spec = result.spec
    typer.echo(f"{example}: valid: {summary(spec)}")

    build_demo_root(root, spec)
    host = Host(root)
    typer.echo(
        f"throwaway root: {root} (base users {', '.join(sorted({d.base_user for d in spec.domains}))}, "
        f"uid {os.getuid()})"
    )
    style = style_for_tty(sys.stdout)
    try:
        _step(2, "plan")
        plan, _ = plan_on_host(host, spec, now=int(time.time()), fallback_dir=example.parent)
        typer.echo(render_text(plan, style), nl=False)

        _step(3, "apply --yes")
        with global_lock(host.lock_path, 10):
            outcome = execute(plan, host, log=typer.echo)
        if outcome.errors:
            for error in outcome.errors:
                typer.echo(f"vmreconcile: error: {error}", err=True)
            raise typer.Exit(1)
        add, change, destroy = plan.summary()
        typer.echo(f"Apply complete: {add} added, {change} changed, {destroy} destroyed.")

        _step(4, "plan again (must show no changes)")
        again, _ = plan_on_host(host, spec, now=int(time.time()), fallback_dir=example.parent)
        typer.echo(render_text(again, style), nl=False)
    except PLAN_ERRORS as exc:
        raise fail(error_text(exc)) from None
    if not again.empty:
        raise fail("the second plan is not empty: apply did not converge")
    typer.echo("")
    typer.echo("Look around, with the vmreconcile that just ran:")
    typer.echo(f"  {command_line('--root', str(root), 'show')}")
    typer.echo(f"  {command_line('--root', str(root), 'plan', shown_path(example.resolve()))}")
    typer.echo(f"  find {shlex.quote(str(root))}/home -printf '%M %p\\n'")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
