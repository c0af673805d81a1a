"""authpipe, courier-authlib's long-lived authentication program, and its parts.

`protocol` reads requests and frames replies, `directory` resolves logins with files cached by
their identity (the login core's rules, without its per-process set-up), `passwd` carries out
a password change as the base user, and `authpipe` ties them together.
"""
