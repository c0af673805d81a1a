"""``vmreconcile apply``: plan under the global lock, show it, confirm, write, check.

Refuses without a terminal unless ``--yes``; refuses to start while a domain has errors
(unless ``--domain`` leaves it out); refuses a saved plan that is not signed by this host,
whose live state moved or whose changes are not what its desired state changes now; refuses
plans that trip the safety brake unless ``--force``. Exit 0 only when the host now matches
(the written part is read back and diffed again); 3 when some domains failed while being
written (each is named; the others were applied); 1 on any other error, including a failed
reload after the files were written.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path

import typer

from ..apply import lock
from ..apply.execute import ApplyResult, control_owners, execute, of_failed_domain
from ..cache.livestate import LiveCache
from ..cache.resolved import ResolveMemo
from ..cache.store import CacheStore
from ..desired.spec import Spec
from ..history.origin import Origin, config_origin, plan_file_origin, unknown_origin
from ..history.record import recover_leftovers, start_apply
from ..host import Host
from ..plan.changes import Plan
from ..plan.planfile import PlanFileError, load_plan
from ..plan.plankey import plan_key
from ..plan.render import View, render_text
from ..printable import printable
from ..workflow import SavedPlanMismatch, plan_on_host, remaining_changes, replan_saved
from .common import cache_store, config_argument, domains_option, warn
from .plan import (
    PLAN_ERRORS,
    compact_option,
    detail_option,
    error_text,
    fail,
    host_of,
    load_spec_or_fail,
    report_domain_errors,
    style_for_tty,
    view_of,
)
from .privilege import privilege_message


def _progress(total_done: int, total: int, label: str) -> None:
    if total:
        width = 24
        filled = width * total_done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {total_done}/{total} {label[:40]:<40}")
        if total_done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def confirm_or_refuse(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail("refusing to apply without confirmation: stdin is not a terminal; review the plan and pass --yes")
    if not typer.confirm("Apply these changes?", default=False):
        raise fail("apply cancelled; nothing was written")


def run_apply(
    host: Host,
    plan: Plan,
    *,
    yes: bool,
    force: bool,
    echo=typer.echo,
    origin: Origin | None = None,
    view: View = "default",
) -> ApplyResult | None:
    """Show ``plan`` (its summary and grouped changes: one screen, unless ``view`` asks for
    more), check the brake, confirm, execute. None when there was nothing to do.

    The history entry is prepared before the first write and committed after the last
    (`history.record`); ``origin`` says who applied which configuration.
    """
    echo(render_text(plan, style_for_tty(sys.stdout), view), nl=False)
    if plan.empty:
        return None
    brake = plan.brake_violations()
    if brake and not force:
        raise fail("safety brake: refusing to apply (nothing was written); " + "; ".join(brake))
    confirm_or_refuse(yes)
    progress = _progress if sys.stderr.isatty() else None
    recording = start_apply(host, plan, origin or unknown_origin(), log=echo, warn=warn)
    try:
        result = execute(plan, host, log=lambda m: echo(m), progress=progress)
        if not result.host_wide_errors:
            result.errors += convergence_errors(host, plan, result.failed_domains)
    except BaseException:  # interrupted: what was written stays recorded, and can be rolled back
        recording.finish(wrote=True, interrupted=True)
        raise
    entry = recording.finish(wrote=bool(result.written), errors=result.errors)
    recorded = f"history entry {entry['id']} (`vmreconcile rollback {entry['id']}` undoes it)" if entry else None
    add, change, destroy = plan.summary()
    if result.failed_domains and not result.host_wide_errors:
        report_failed_domains(result, recorded)
        raise typer.Exit(PARTIAL_EXIT)
    if result.errors:
        for error in result.errors:
            typer.echo(printable(f"vmreconcile: error: {error}"), err=True)
        if result.written:  # each unit is complete on its own: the host is consistent, just not done
            typer.echo(
                printable(
                    f"vmreconcile: written before the error: {', '.join(result.written)}; "
                    "apply again once the error is fixed"
                ),
                err=True,
            )
        if recorded:
            typer.echo(f"vmreconcile: recorded as {recorded}", err=True)
        raise typer.Exit(1)
    echo(f"Apply complete: {add} added, {change} changed, {destroy} destroyed.")
    if recorded:
        echo(f"Recorded as {recorded}.")
    return result


#: apply's exit status when some domains failed and everything else was applied.
PARTIAL_EXIT = 3


def report_failed_domains(result: ApplyResult, recorded: str | None) -> None:
    """One line per domain that failed, on stderr, then what to do; the others were applied."""
    failed = result.failed_domains
    typer.echo(
        printable(
            f"vmreconcile: {len(failed)} domain(s) failed and were left as they were; every other change was applied:"
        ),
        err=True,
    )
    for domain in sorted(failed):
        typer.echo(printable(f"  - {domain}: {_without_prefix(failed[domain], domain)}"), err=True)
    for error in result.errors:
        if error not in failed.values():
            typer.echo(printable(f"vmreconcile: error: {error}"), err=True)
    if recorded:
        typer.echo(f"vmreconcile: recorded as {recorded}", err=True)
    typer.echo("vmreconcile: apply again once those are fixed; it carries out what is left", err=True)


def _without_prefix(error: str, domain: str) -> str:
    return error[len(domain) + 2 :] if error.startswith(f"{domain}: ") else error


def convergence_errors(host: Host, plan: Plan, failed: Mapping[str, str] | None = None) -> list[str]:
    """Converge or fail: what still differs once everything was written (read back from the
    host), as errors; apply exits 0 only when the next plan would be empty. The changes of the
    domains in ``failed`` (left as they were on purpose) are not counted."""
    try:
        left = remaining_changes(host, plan, skip=failed or ())
    except PLAN_ERRORS as exc:
        return [f"cannot read the host back after apply: {error_text(exc)}"]
    if failed:
        owners = control_owners(plan)
        left = [
            c
            for c in left
            if c.domain not in failed and not (c.type == "control_line" and of_failed_domain(c, owners, failed))
        ]
    if not left:
        return []
    shown = ", ".join(c.address for c in left[:5]) + (" ..." if len(left) > 5 else "")
    return [f"the host does not match the plan after apply: {len(left)} change(s) still pending ({shown})"]


def apply_command(
    ctx: typer.Context,
    config: Path = config_argument(),
    plan_file: Path | None = typer.Option(
        None, "--plan", metavar="FILE", help="Apply a plan saved by `plan --out FILE`."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed without a terminal)."),
    force: bool = typer.Option(False, "--force", help="Override the safety brake (>30% of a domain's entries)."),
    purge_mailboxes: bool = typer.Option(
        False, "--purge-mailboxes", help="Also delete the maildirs of deleted users (cur/new/tmp only)."
    ),
    lock_timeout: float = typer.Option(
        lock.DEFAULT_TIMEOUT, "--lock-timeout", metavar="SECONDS", help="Seconds to wait for the lock."
    ),
    domain: list[str] | None = domains_option(),
    compact: bool = compact_option(),
    detail: bool = detail_option(),
    now: int | None = typer.Option(None, "--now", hidden=True, help="Clock for new entries (tests)."),
) -> None:
    """Make the host match the configuration (or a saved plan). Idempotent.

    Shows the plan's summary and its changes grouped (--detail: every field of every
    change), then asks.

    Example: vmreconcile apply examples/howto.yaml --yes
    """
    view = view_of(compact, detail)
    host = host_of(ctx)
    # the plan apply shows may use plan's cache; what apply checks under the locks never does
    # (a table's digest when it is replaced, a saved plan's live state, the host read back)
    with (cache_store(ctx) if plan_file is None else None) or contextlib.nullcontext() as store:
        spec = load_spec_or_fail(config, store) if plan_file is None else None
        _apply(ctx, host, config, spec, store, plan_file, yes, force, purge_mailboxes, lock_timeout, domain, view, now)


def _apply(
    ctx: typer.Context,
    host: Host,
    config: Path,
    spec: Spec | None,
    store: CacheStore | None,
    plan_file: Path | None,
    yes: bool,
    force: bool,
    purge_mailboxes: bool,
    lock_timeout: float,
    domain: list[str] | None,
    view: View,
    now: int | None,
) -> None:
    try:
        with lock.global_lock(host.lock_path, lock_timeout, on_wait=lambda m: typer.echo(m, err=True)):
            recover_leftovers(host, log=typer.echo, warn=warn)  # a killed apply's history entry
            if plan_file is not None:
                plan = load_saved_plan(host, plan_file, purge_mailboxes)
                origin = plan_file_origin(plan_file)
            else:
                assert spec is not None
                plan, _ = plan_on_host(
                    host,
                    spec,
                    now=now,
                    purge_mailboxes=purge_mailboxes,
                    fallback_dir=config.parent,
                    targets=tuple(domain) if domain else None,
                    cache=LiveCache(store) if store is not None else None,
                    memo=ResolveMemo(store) if store is not None else None,
                )
                if plan.errors:
                    typer.echo(render_text(plan, style_for_tty(sys.stdout), view), nl=False)
                    report_domain_errors(plan)
                    raise fail("refusing to apply while a domain has errors; nothing was written")
                origin = config_origin(config, spec.history_keep)
            run_apply(host, plan, yes=yes, force=force, origin=origin, view=view)
    except lock.LockTimeout as exc:
        raise fail(exc.strerror or str(exc)) from None
    except PermissionError as exc:
        raise fail(privilege_message(exc, "apply", host)) from None
    except PLAN_ERRORS as exc:
        raise fail(error_text(exc)) from None


def load_saved_plan(host: Host, path: Path, purge_mailboxes: bool) -> Plan:
    """The saved plan, recomputed against the host: only a file this host signed, made against
    the live state as it still is, whose changes are what its desired state changes now."""
    try:
        plan = load_plan(path, lambda: plan_key(host, create=False))
    except PlanFileError as exc:
        raise fail(str(exc)) from None
    if purge_mailboxes and not plan.purge_mailboxes:
        raise fail("--purge-mailboxes must be given when the plan is made (plan --purge-mailboxes --out FILE)")
    if plan.purge_mailboxes and not purge_mailboxes:
        raise fail(f"{path} deletes mailboxes: give --purge-mailboxes to apply it too")
    try:
        return replan_saved(host, plan)
    except SavedPlanMismatch as exc:
        raise fail(f"{path}: {exc}") from None


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
