#!/bin/sh
# Publish this mail host's live state for offline plans in CI: `vmreconcile show --format json
# --redact` (every hash replaced by sha256:<digest>, nothing crackable), written atomically.
#
# usage: publish-snapshot.sh DEST.json [CONFIG_REPO_CHECKOUT]
#   DEST.json             where to write the snapshot (e.g. /var/lib/vmreconcile/snapshot.json)
#   CONFIG_REPO_CHECKOUT  optional: a clone of the config repository; the snapshot is copied to
#                         hosts/$HOST/snapshot.json there, committed when it changed, and pushed
# Environment: VMRECONCILE (the command, default vmreconcile), VMRECONCILE_ROOT (--root),
#              HOST (default: hostname -f).
# cron (/etc/cron.d/vmreconcile-snapshot):
#   */15 * * * * root /usr/local/sbin/publish-snapshot.sh /var/lib/vmreconcile/snapshot.json /var/lib/vmreconcile/config-repo
set -eu

dest=${1:?usage: publish-snapshot.sh DEST.json [CONFIG_REPO_CHECKOUT]}
repo=${2:-}
vmr=${VMRECONCILE:-vmreconcile}
host=${HOST:-$(hostname -f)}

mkdir -p "$(dirname "$dest")"
tmp="$dest.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$vmr" show --format json --redact > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$dest"

if [ -n "$repo" ]; then
    git -C "$repo" pull --quiet --ff-only
    mkdir -p "$repo/hosts/$host"
    cp "$dest" "$repo/hosts/$host/snapshot.json"
    git -C "$repo" add "hosts/$host/snapshot.json"
    if ! git -C "$repo" diff --cached --quiet; then
        git -C "$repo" commit --quiet -m "snapshot of $host"
        git -C "$repo" push --quiet
    fi
fi
