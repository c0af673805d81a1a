"""``vmreconcile plan``: what apply would do, safe to run anywhere (reads only).

Exit codes (Terraform's): 0 success; with ``--detailed-exitcode`` 0 = no changes, 2 = changes
pending; 1 = error. ``--state FILE`` plans against a saved ``show --format json`` instead of
the host; ``--out FILE`` saves the plan (mode 0600) for ``apply --plan FILE``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import typer

from ..cache.livestate import LiveCache
from ..cache.resolved import ResolveMemo
from ..cache.store import CacheStore
from ..desired.spec import Spec
from ..formats.cdb import CdbError
from ..formats.hashing import HashingError
from ..formats.vpwentry import RecordError
from ..gcpause import collector_paused
from ..host import BaseUserMissing
from ..live import DomainReadError
from ..model import HostState
from ..plan.build import UnknownTarget, build_plan
from ..plan.changes import Plan
from ..plan.planfile import save_plan
from ..plan.plankey import plan_key
from ..plan.render import MARKDOWN_LIMIT, View, render_json, render_markdown, render_text
from ..plan.resolve import ResolveError
from ..preflight import HostProblems, snapshot_option_problems
from ..tables import TableError
from ..workflow import load_config, plan_on_host
from .common import DEFAULT_CONFIG as DEFAULT_CONFIG  # where other command modules have imported it from
from .common import cache_store, config_argument, domains_option, fail, host_of, style_for
from .progress import Progress

#: Problems that end a plan or apply with one message and exit 1.
PLAN_ERRORS = (
    BaseUserMissing,
    CdbError,
    RecordError,
    TableError,
    ResolveError,
    HashingError,
    UnknownTarget,
    DomainReadError,
    HostProblems,
    OSError,
)


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def load_spec_or_fail(path: Path, cache: CacheStore | None = None) -> Spec:
    from ..desired.errors import ConfigErrors

    try:
        return load_config(path, cache)
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
    if isinstance(exc, HostProblems):
        return "\nvmreconcile: ".join(str(p) for p in exc.problems)
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
    progress = Progress()
    # a fleet's plan builds millions of small acyclic objects: no collection while it is made
    with cache_store(ctx) or contextlib.nullcontext() as store, collector_paused():
        try:
            return _make_plan(ctx, config, state, now, purge, targets, store, progress)
        finally:
            progress.finish()


def _make_plan(
    ctx: typer.Context,
    config: Path,
    state: Path | None,
    now: int | None,
    purge: bool,
    targets: tuple[str, ...] | None,
    store: CacheStore | None,
    progress: Progress,
) -> Plan:
    progress.stage(f"reading {config}")
    spec = load_spec_or_fail(config, store)
    try:
        if state is not None:
            live = read_state_file(state)
            problems = snapshot_option_problems(live)
            if problems:
                raise HostProblems(problems)
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
        progress.stage("reading the host's domains")
        plan, _ = plan_on_host(
            host_of(ctx),
            spec,
            now=now,
            purge_mailboxes=purge,
            fallback_dir=config.parent,
            targets=targets,
            cache=LiveCache(store) if store is not None else None,
            memo=ResolveMemo(store) if store is not None else None,
            progress=progress,
        )
        return plan
    except PLAN_ERRORS as exc:
        raise fail(error_text(exc)) from None


def _secrets(spec: Spec, config: Path):
    from ..workflow import config_dir, secret_reader

    return secret_reader(config_dir(spec, config.resolve().parent))


def style_for_tty(stream: TextIO) -> Callable[[str, str], str]:
    """Colour only when writing to a terminal, and not with ``NO_COLOR`` (`common.style_for`)."""
    return style_for(stream)


def view_of(compact: bool, detail: bool) -> View:
    """The text/markdown view the ``--compact`` / ``--detail`` flags ask for (not both)."""
    if compact and detail:
        raise fail("--compact and --detail cannot be combined", code=2)
    return "compact" if compact else "detail" if detail else "default"


def compact_option() -> Any:
    return typer.Option(False, "--compact", help="One line per change (text and markdown).")


def detail_option() -> Any:
    return typer.Option(False, "--detail", help="Every field of every change, nothing grouped or left out.")


def render(plan: Plan, format: PlanFormat, view: View = "default", max_chars: int = MARKDOWN_LIMIT) -> str:
    if format is PlanFormat.json:
        return render_json(plan)
    if format is PlanFormat.markdown:
        return render_markdown(plan, view, max_chars)
    return render_text(plan, style_for_tty(sys.stdout), view)


def plan_command(
    ctx: typer.Context,
    config: Path = config_argument(),
    format: PlanFormat = typer.Option(
        PlanFormat.text, "--format", "-f", metavar="FORMAT", help="text, json or markdown."
    ),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 = no changes, 2 = changes pending, 1 = error."
    ),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="Save the plan (mode 0600) for apply --plan FILE."
    ),
    state: Path | None = typer.Option(
        None, "--state", metavar="FILE", help="Plan against a saved `show --format json`."
    ),
    purge_mailboxes: bool = typer.Option(
        False, "--purge-mailboxes", help="Plan the removal of deleted users' maildirs too."
    ),
    domain: list[str] | None = domains_option(),
    compact: bool = compact_option(),
    detail: bool = detail_option(),
    max_chars: int = typer.Option(
        MARKDOWN_LIMIT,
        "--max-chars",
        metavar="N",
        min=1000,
        help="Markdown: the longest comment to write; past it the first changes and a note (GitHub allows 65,536).",
    ),
    now: int | None = typer.Option(None, "--now", hidden=True, help="Clock for new entries (tests)."),
) -> None:
    """Show what apply would change: a summary per domain, then the changes (hashes masked).

    Alike changes are grouped by default; --compact gives one line per change, --detail every
    field of every change.

    Example: vmreconcile plan examples/howto.yaml --detailed-exitcode
    """
    view = view_of(compact, detail)
    plan = make_plan(ctx, config, state, now, purge_mailboxes, tuple(domain) if domain else None)
    typer.echo(render(plan, format, view, max_chars), nl=False)
    if plan.errors:
        report_domain_errors(plan)
        if out is not None:
            typer.echo(f"vmreconcile: the plan was not saved to {out}: it does not cover every domain", err=True)
        raise typer.Exit(1)
    if out is not None:
        try:
            save_plan(plan, out, None if plan.offline else plan_key(host_of(ctx), create=True))
        except OSError as exc:
            raise fail(exc.strerror if exc.strerror and not exc.filename else f"{out}: {exc.strerror}") from None
        if plan.offline:
            typer.echo(
                f"Saved the plan to {out} (mode 0600), for review only: a --state plan is never applied", err=True
            )
        else:
            typer.echo(f"Saved the plan to {out} (mode 0600). Apply it with: vmreconcile apply --plan {out}", err=True)
    if detailed_exitcode and not plan.empty:
        raise typer.Exit(2)


def report_domain_errors(plan: Plan) -> None:
    """One line per domain problem on stderr (``file:line:col: domain NAME: ...`` as ``validate``
    prints its diagnostics, or ``domain NAME: ...`` where no YAML line is to blame), then what
    can still be done."""
    for error in plan.errors:
        typer.echo(error, err=True)
    healthy = list(plan.targets or ())
    if len(healthy) > 3:
        hint = f"; apply can still be given the {len(healthy)} others, each with --domain NAME"
    elif healthy:
        hint = f"; the others can be applied with {' '.join('--domain ' + d for d in healthy)}"
    else:
        hint = ""
    typer.echo(f"vmreconcile: {len(plan.errors)} problem(s): those domains were not planned{hint}", err=True)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
