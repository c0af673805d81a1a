#!/bin/sh
# Courier (authdaemond) in front of VMailMgr domains managed by vmreconcile, Debian 12.
# Run as root. Read docs/courier.md first; this only strings the documented steps together.
set -eu

# 1. Packages: the daemon, authtest/authenumerate, and the separate authpipe module.
apt-get install --no-install-recommends courier-authdaemon courier-authlib-pipe

# 2. The runtime launchers (stdlib-only copy, run by /usr/bin/python3 -IS).
vmreconcile install-runtime --bindir /usr/local/bin

# 3. authdaemond: authpipe first, the program at the compiled-in path.
install -o root -g courier -m 0640 authdaemonrc /etc/courier/authdaemonrc
ln -sf /usr/local/bin/authpipe /etc/courier/authProg
systemctl restart courier-authdaemon

# 4. Check: a login, a refusal, the listing.
authtest -s imap me@mydomain.org 'secret'
authtest -s imap me@mydomain.org 'wrong' || echo "refused, as it should be"
authenumerate | head
