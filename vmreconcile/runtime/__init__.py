"""The stdlib-only programs that qmail, Dovecot and Courier run, grouped by the peer they serve.

``login/`` (checkvpw, vauthenticate, authvmailmgr and the login core), ``courier/`` (authpipe),
``delivery/`` (vdeliver); ``launch.PROGRAMS`` maps each program name to its module and
``process`` starts hooks and children for all of them. docs/ARCHITECTURE.md has the map.
"""
