"""vauthd: Dovecot's dict passdb/userdb served from VMailMgr tables by one long-lived process.

``protocol`` (bytes of Dovecot's ``proxy:`` dict protocol), ``answers`` (a request key -> the
account facts Dovecot needs), ``tablecache`` (tables read into memory, re-read on change),
``server`` (the event loop) and ``vauthd`` (the program: arguments and sockets).
"""
