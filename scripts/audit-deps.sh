#!/usr/bin/env bash
# Known-vulnerable pins in requirements.lock, checked with pip-audit (from PyPI).
#
# Advisories come from the internet (OSV at api.osv.dev, or PyPI's JSON API). Before trusting
# a clean result, the script audits a canary pin that is known to be vulnerable: a source
# that cannot name the canary's advisories is unreachable or unusable from here (pip-audit
# itself would report "No known vulnerabilities found" when PyPI's per-version pages are
# missing, as on a mirror). Then it says so plainly and exits 0: no check was possible.
# Where a source answers, every pin is audited and any known vulnerability fails (exit 1).
#
# Environment (all optional):
#   AUDIT_LOCK_FILE    the pins to audit (requirements.lock)
#   AUDIT_SERVICES     advisory sources to try, in order ("osv pypi")
#   AUDIT_CANARY       a pin with published advisories ("werkzeug==2.0.0")
#   AUDIT_IGNORE_VULNS advisory ids accepted after review, space-separated
#   AUDIT_VENV         where pip-audit is installed (var/audit-venv)
#   PIP_AUDIT          a pip-audit executable to use instead of installing one
set -euo pipefail
cd "$(dirname "$0")/.."

lock=${AUDIT_LOCK_FILE:-requirements.lock}
services=${AUDIT_SERVICES:-osv pypi}
canary=${AUDIT_CANARY:-werkzeug==2.0.0}
venv=${AUDIT_VENV:-var/audit-venv}
pip_audit=${PIP_AUDIT:-}

if [ ! -f "$lock" ]; then
    echo "audit-deps: $lock not found" >&2
    exit 2
fi
if [ -z "$pip_audit" ]; then
    pip_audit="$venv/bin/pip-audit"
    if [ ! -x "$pip_audit" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "pip-audit>=2.7,<3"
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$canary" >"$work/canary.txt"

# How many vulnerabilities a pip-audit JSON report lists (0 for a missing or broken report).
count_vulns() {
    python3 - "$1" <<'PY'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(0)
else:
    print(sum(len(d.get("vulns", [])) for d in report.get("dependencies", [])))
PY
}

source_found=""
for service in $services; do
    # Exit status 1 is expected here: the canary is vulnerable.
    "$pip_audit" -r "$work/canary.txt" --no-deps --disable-pip -s "$service" \
        --progress-spinner off --format json -o "$work/canary-$service.json" \
        >"$work/canary-$service.log" 2>&1 || true
    if [ "$(count_vulns "$work/canary-$service.json")" -gt 0 ]; then
        source_found=$service
        break
    fi
    echo "audit-deps: advisory source '$service' did not name the advisories of $canary:" \
        "unreachable or incomplete from here (pip-audit: $(tail -n 1 "$work/canary-$service.log" |
            cut -c1-160))"
done

if [ -z "$source_found" ]; then
    echo "audit-deps: NO DEPENDENCY AUDIT PERFORMED: no advisory source ($services) could be"
    echo "audit-deps: reached from here to name the known advisories of the canary $canary."
    echo "audit-deps: Known-vulnerable pins in $lock are NOT checked on this machine; run"
    echo "audit-deps: scripts/audit-deps.sh where api.osv.dev or pypi.org is reachable."
    exit 0
fi

ignores=()
for id in ${AUDIT_IGNORE_VULNS:-}; do
    ignores+=(--ignore-vuln "$id")
done
echo "audit-deps: auditing $lock against '$source_found' (canary $canary answered)"
set +e
"$pip_audit" -r "$lock" --require-hashes --no-deps --disable-pip -s "$source_found" \
    --progress-spinner off "${ignores[@]}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
    echo "audit-deps: FAILED: known-vulnerable pins in $lock (pip-audit exit $status)" >&2
    exit 1
fi
echo "audit-deps: no known vulnerabilities in $lock"
