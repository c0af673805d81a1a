"""``python -m vmreconcile``: the same as the ``vmreconcile`` command."""

from .cli.main import main

main()
