"""``vmreconcile export``: the live system as configuration YAML (adopting an existing install).

The export is checked against the host it came from (`adopt`): when the YAML cannot carry
everything, each lost part is named on stderr and the export is refused (exit 1, nothing
written) unless ``--lossy``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..adopt import DomainsUnreadable, adopt
from ..atomic import write_file
from ..desired.export import ExportError
from ..printable import printable
from .common import fail, host_of
from .privilege import live_error_text
from .show import LIVE_ERRORS, domain_errors

#: The mode of ``export --output FILE``: owner only (the YAML carries the password hashes).
EXPORT_MODE = 0o600


def export(
    ctx: typer.Context,
    domain: str | None = typer.Option(
        None, "--domain", metavar="DOMAIN", help="Only this domain (global sections are kept)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to FILE (atomically) instead of stdout.", metavar="FILE"
    ),
    lossy: bool = typer.Option(
        False, "--lossy", help="Write the export even when it cannot carry everything (the lost parts are named)."
    ),
) -> None:
    """Print the live domains as vmreconcile YAML: every field needed to rebuild them exactly.

    Stored hashes are written as they are; users the Courier authpipe may change passwords of
    are written `password: unmanaged`. Planning the result against the same host shows no
    change: export checks this itself, and when something cannot be said in YAML (a
    non-standard .qmail-default, names that are not UTF-8) it names it on stderr and exits 1,
    writing nothing, unless --lossy. --output writes FILE with mode 0600 (it holds the
    password hashes), replacing it in one rename.

    Example: vmreconcile export --domain mydomain.org -o vmreconcile.yaml
    """
    try:
        adoption = adopt(host_of(ctx), domain)
    except DomainsUnreadable as exc:
        raise domain_errors(exc.errors, "export", host_of(ctx)) from None
    except ExportError as exc:
        raise fail(str(exc)) from None
    except LIVE_ERRORS as exc:
        raise fail(live_error_text(exc, "export", host_of(ctx))) from None
    for part in adoption.lost:
        typer.echo(f"vmreconcile: export: lost: {printable(part)}", err=True)
    if not adoption.exact and not lossy:
        raise fail(
            f"the export cannot carry {len(adoption.lost)} part(s) of this host (above); nothing written. "
            "Fix them on the host, or pass --lossy to write the export anyway"
        )
    if output is None:
        sys.stdout.write(adoption.text)
        return
    try:
        # Atomic (never half a config in a checkout) and 0600: the export holds every password
        # hash of the host, for the one who ran it; a wider mode is a deliberate chmod away.
        write_file(output, adoption.text.encode("utf-8"), mode=EXPORT_MODE)
    except OSError as exc:
        raise fail(f"{output}: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    app.command("export")(export)
