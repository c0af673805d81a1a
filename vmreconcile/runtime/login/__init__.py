"""Login programs (checkvpw, vauthenticate, authvmailmgr) and the login core they share.

`core` maps a login name to a base user and a table entry, checks the password (`fastcrypt`
for the hashes VMailMgr writes) and drops privileges; each program only reads its request,
runs its hooks and reports the result. Courier's authpipe reuses the core's rules.
"""
