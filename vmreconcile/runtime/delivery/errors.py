"""The one way a delivery step reports failure: an exit code qmail understands and a message.

qmail-local reads the delivery program's exit code (0 delivered, 99 delivered and stop,
100 bounce, 111 try again later) and shows its stdout in the bounce or the log. Every step of
vdeliver raises `DeliveryFailure` instead of exiting itself, so cleanup (the ``tmp/`` file)
always happens in one place before the process ends.
"""

from __future__ import annotations

OK = 0
STOP = 99
PERMANENT = 100
TEMPORARY = 111
USAGE = 1


class DeliveryFailure(Exception):
    """A failed delivery step: ``code`` is the exit status, ``message`` the text for stdout.

    ``prefixed`` is False for the few VMailMgr texts printed without ``vdeliver: ``.
    """

    def __init__(self, code: int, message: str, prefixed: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.prefixed = prefixed


def permanent(message: str) -> DeliveryFailure:
    return DeliveryFailure(PERMANENT, message)


def temporary(message: str) -> DeliveryFailure:
    return DeliveryFailure(TEMPORARY, message)
