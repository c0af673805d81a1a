"""vdeliver, the program ``~base/.qmail-default`` runs for every message, and its parts.

`message` reads the message without loading it, `maildir` writes it into a maildir, `limits`
and `maildirsize` enforce the stored limits, `forward` hands it to qmail-queue, and `errors`
is how every step reports a failure as an exit code qmail understands.
"""
