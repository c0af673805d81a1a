#!/bin/sh
# Offline plans for a pull/merge request of the config repository: no root, no access to the
# mail hosts. Each host publishes its live state with hashes redacted (publish-snapshot.sh,
# from cron or the Ansible playbook); CI plans the proposed YAML against that snapshot.
#
# usage: vmreconcile-ci-plan.sh [HOSTS_DIR [OUT_DIR]]
#   HOSTS_DIR/<host>/config/         the host's configuration (*.yaml files, or one file)
#   HOSTS_DIR/<host>/snapshot.json   `vmreconcile show --format json --redact` from that host
# Writes OUT_DIR/plan.md (one section per host: the pull-request comment), and per host
# OUT_DIR/<host>.md and OUT_DIR/<host>.json (the plan as data).
# Exit status (like `plan --detailed-exitcode`): 0 no changes on any host, 2 changes pending,
# 1 an error on some host (invalid YAML, unreadable snapshot, missing base user).
# plan.md must fit one pull-request comment (GitHub: 65,536 characters): the hosts share
# VMRECONCILE_COMMENT_CHARS (default 60000) equally, each plan keeping its summary and first
# changes within its share (at least 1000 characters each).
#
# Literal hashes in the YAML are compared with the snapshot's sha256 digests. Passwords from
# {env:}/{file:} secrets cannot be compared offline (the snapshot has no hash to check a secret
# against); the plan lists them as "not verifiable offline" in its notes.
set -u

hosts=${1:-hosts}
out=${2:-vmreconcile-plan}
vmr=${VMRECONCILE:-vmreconcile}

count=0
for dir in "$hosts"/*/; do
    if [ -d "${dir}config" ] || [ -f "${dir}config.yaml" ]; then count=$((count + 1)); fi
done
share=$(( ${VMRECONCILE_COMMENT_CHARS:-60000} / (count + (count == 0)) ))
if [ "$share" -lt 1000 ]; then share=1000; fi

mkdir -p "$out"
summary="$out/plan.md"
: > "$summary"
status=0
found=0

worse() {  # keep the most serious status: 1 (error) > 2 (changes) > 0
    if [ "$1" = 1 ] || [ "$status" = 1 ]; then status=1; elif [ "$1" = 2 ]; then status=2; fi
}

fenced() {  # a file as a fenced block in the summary
    printf '\n```\n' >> "$summary"
    cat "$1" >> "$summary"
    printf '```\n' >> "$summary"
}

for dir in "$hosts"/*/; do
    [ -d "${dir}config" ] || [ -f "${dir}config.yaml" ] || continue
    found=1
    host=$(basename "$dir")
    config="${dir}config"
    [ -d "$config" ] || config="${dir}config.yaml"
    printf '## %s\n\n' "$host" >> "$summary"

    if ! "$vmr" validate "$config" > "$out/$host.validate.txt" 2>&1; then
        printf '**The configuration is invalid:**\n' >> "$summary"
        fenced "$out/$host.validate.txt"
        printf '\n' >> "$summary"
        worse 1
        continue
    fi
    if [ ! -f "${dir}snapshot.json" ]; then
        printf '**No snapshot:** %s is missing; publish it from the host first.\n\n' "${dir}snapshot.json" >> "$summary"
        worse 1
        continue
    fi

    "$vmr" plan "$config" --state "${dir}snapshot.json" --format json --detailed-exitcode \
        > "$out/$host.json" 2> "$out/$host.err"
    rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 2 ]; then
        "$vmr" plan "$config" --state "${dir}snapshot.json" --format markdown --max-chars "$share" \
            > "$out/$host.md" 2>> "$out/$host.err"
        cat "$out/$host.md" >> "$summary"
        if [ "$(wc -l < "$out/$host.validate.txt")" -gt 1 ]; then
            printf '\n<details><summary>validate warnings</summary>\n' >> "$summary"
            fenced "$out/$host.validate.txt"
            printf '\n</details>\n' >> "$summary"
        fi
        printf '\n' >> "$summary"
        worse "$rc"
    else
        printf '**vmreconcile plan failed:**\n' >> "$summary"
        fenced "$out/$host.err"
        printf '\n' >> "$summary"
        worse 1
    fi
done

if [ "$found" = 0 ]; then
    echo "vmreconcile-ci-plan: no $hosts/<host>/config found" >&2
    exit 1
fi
cat "$summary"
exit "$status"
