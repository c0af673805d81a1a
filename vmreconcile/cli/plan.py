"""``vmreconcile plan``: what apply would do, safe to run anywhere (reads only).

Exit codes (Terraform's): 0 success; with ``--detailed-exitcode`` 0 = no changes, 2 = changes
pending; 1 = error. ``--state FILE`` plans against a saved ``show --format json`` instead of
the host; ``--out FILE`` saves the plan (mode 0600) for ``apply --plan FILE``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import typer

from ..desired.spec import Spec
from ..formats.cdb import CdbError
from ..formats.hashing import HashingError
from ..formats.vpwentry import RecordError
from ..host import BaseUserMissing
from ..model import HostState
from ..plan.build import UnknownTarget, build_plan
from ..plan.changes import Plan
from ..plan.planfile import save_plan
from ..plan.render import render_json, render_markdown, render_text
from ..plan.resolve import ResolveError
from ..tables import TableError
from ..workflow import load_config, plan_on_host
from .common import fail, host_of

DEFAULT_CONFIG = Path("vmreconcile.yaml")

#: Problems that end a plan or apply with one message and exit 1.
PLAN_ERRORS = (BaseUserMissing, CdbError, RecordError, TableError, ResolveError, HashingError, UnknownTarget, OSError)


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def load_spec_or_fail(path: Path) -> Spec:
    from ..desired.errors import ConfigErrors

    try:
        return load_config(path)
    except ConfigErrors as exc:
        for problem in exc.errors:
            typer.echo(str(problem), err=True)
        raise fail(f"{path}: {len(exc.errors)} error(s) in the configuration") from None
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror}") from None


def read_state_file(path: Path) -> HostState:
    from ..showjson import StateDocumentError, state_from_json

    try:
        return state_from_json(json.loads(path.read_text("utf-8", "surrogateescape")))
    except (OSError, ValueError, StateDocumentError) as exc:
        raise fail(f"{path}: cannot use as --state: {exc}") from None


def error_text(exc: BaseException) -> str:
    from .privilege import denied_text

    denied = denied_text(exc)
    if denied is not None:
        return denied
    if isinstance(exc, ResolveError):
        return "; ".join(exc.problems)
    if isinstance(exc, OSError) and exc.strerror and not exc.filename:
        return exc.strerror
    return str(exc)


def make_plan(
    ctx: typer.Context,
    config: Path,
    state: Path | None,
    now: int | None,
    purge: bool,
    targets: tuple[str, ...] | None = None,
) -> Plan:
    spec = load_spec_or_fail(config)
    try:
        if state is not None:
            live = read_state_file(state)
            return build_plan(
                spec,
                live,
                now=int(time.time()) if now is None else now,
                secrets=_secrets(spec, config),
                purge_mailboxes=purge,
                manage_changeable=False,
                targets=targets,
                offline=True,
            )
        plan, _ = plan_on_host(
            host_of(ctx), spec, now=now, purge_mailboxes=purge, fallback_dir=config.parent, targets=targets
        )
        return plan
    except PLAN_ERRORS as exc:
        raise fail(error_text(exc)) from None


def _secrets(spec: Spec, config: Path):
    from ..workflow import config_dir, secret_reader

    return secret_reader(config_dir(spec, config.resolve().parent))


def style_for_tty(stream: TextIO) -> Callable[[str, str], str]:
    """Colour only when writing to a terminal."""
    if stream.isatty():
        return lambda text, colour: typer.style(text, fg=colour)
    return lambda text, colour: text


def render(plan: Plan, format: PlanFormat) -> str:
    if format is PlanFormat.json:
        return render_json(plan)
    if format is PlanFormat.markdown:
        return render_markdown(plan)
    return render_text(plan, style_for_tty(sys.stdout))


def plan_command(
    ctx: typer.Context,
    config: Path = typer.Argument(DEFAULT_CONFIG, help="The YAML configuration (default ./vmreconcile.yaml)."),
    format: PlanFormat = typer.Option(PlanFormat.text, "--format", "-f", help="text, json or markdown."),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 = no changes, 2 = changes pending, 1 = error."
    ),
    out: Path | None = typer.Option(None, "--out", help="Save the plan (mode 0600) for apply --plan FILE."),
    state: Path | None = typer.Option(None, "--state", help="Plan against a saved `show --format json`."),
    purge_mailboxes: bool = typer.Option(
        False, "--purge-mailboxes", help="Plan the removal of deleted users' maildirs too."
    ),
    domain: list[str] | None = typer.Option(None, "--domain", help="Only this domain (repeatable)."),
    now: int | None = typer.Option(None, "--now", hidden=True, help="Clock for new entries (tests)."),
) -> None:
    """Show what apply would change, field by field (hashes masked).

    Example: vmreconcile plan examples/howto.yaml --detailed-exitcode
    """
    plan = make_plan(ctx, config, state, now, purge_mailboxes, tuple(domain) if domain else None)
    typer.echo(render(plan, format), nl=False)
    if out is not None:
        try:
            save_plan(plan, out)
        except OSError as exc:
            raise fail(f"{out}: {exc.strerror}") from None
        typer.echo(f"Saved the plan to {out} (mode 0600). Apply it with: vmreconcile apply --plan {out}", err=True)
    if detailed_exitcode and not plan.empty:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
