#!/usr/bin/env bash
# CI checks for the deploy kit; exits non-zero if any check fails.
#   1. shellcheck on every deploy/*.sh (and deploy/test/*.sh) and on the CI driver .ci/run
#   2. nginx -t on deploy/nginx.conf (deploy/nginx-test.sh: temporary prefix, throwaway openssl certs)
#   3. compose file validation with `docker compose config` (plugin) or `docker-compose config` (v1), plus the
#      file's security rules: Postgres published on 127.0.0.1 only, secrets only via env_file, no secret in the
#      Dockerfile, non-root image, .dockerignore keeps .env/target/data out
#   4. systemd-analyze verify on deploy/aegis.service (skipped with a notice when systemd-analyze is missing)
#   5. health-check.sh against a fake HTTPS health API and an alert receiver: down, dedup, recovery, degraded,
#      untrusted certificate, every channel's JSON shape, and no secret in its output
#   5b. health-check.sh --report: the daily report's lines, bot up and down (a fake systemctl stands in for systemd;
#      the database size is read from the Postgres at AEGIS_TEST_PG, default 127.0.0.1:5432, when one answers)
#   6. ufw.sh dry run: the guide's rules, the §7.3 lockdown, and refusal of a missing or world-wide admin address
# Debian packages: shellcheck nginx openssl curl python3 python3-yaml docker-compose (or a docker CLI with the
# compose plugin) systemd (for systemd-analyze; optional).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
failures=()
passed=0

ok()   { echo "  ok: $*"; passed=$((passed+1)); }
fail() { echo "  FAIL: $*"; failures+=("$*"); }
section() { echo "== $*"; }
# in_order FILE REGEX...: each REGEX matches a whole line of FILE, each one after the line the previous matched.
in_order() {
    python3 - "$@" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
i = 0
for pat in sys.argv[2:]:
    while i < len(lines) and not re.fullmatch(pat, lines[i]):
        i += 1
    if i == len(lines):
        print("    no line matching (in order):", repr(pat))
        sys.exit(1)
    i += 1
PY
}

tmp="$(mktemp -d)"
fixture_pid=""
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
    if [ -n "$fixture_pid" ]; then kill "$fixture_pid" 2>/dev/null || true; wait "$fixture_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- 1. shellcheck
section "shellcheck"
if command -v shellcheck >/dev/null; then
    shopt -s nullglob
    # .ci/run has no .sh suffix: it is named on its own, and by its path so it is not taken for a deploy script.
    scripts=("$here"/*.sh "$here"/test/*.sh "$root/.ci/run")
    shopt -u nullglob
    for s in "${scripts[@]}"; do
        name="$(basename "$s")"
        [ "$s" = "$root/.ci/run" ] && name=".ci/run"
        if shellcheck -x "$s"; then ok "shellcheck $name"; else fail "shellcheck $name"; fi
    done
else
    fail "shellcheck not installed (apt-get install shellcheck)"
fi

# ---------------------------------------------------------------- 2. nginx -t
section "nginx -t"
if bash "$here/nginx-test.sh" "$here/nginx.conf"; then ok "nginx -t deploy/nginx.conf"; else fail "nginx -t deploy/nginx.conf"; fi

# ---------------------------------------------------------------- 3. compose
section "docker compose config"
# Validate in a scratch copy: the file reads ../.env (which must not be created in the real tree) and builds from
# the repository root; an empty .env and the build context path are enough for the client-side validation.
mkdir -p "$tmp/compose/deploy"
cp "$here/docker-compose.yml" "$tmp/compose/deploy/"
: > "$tmp/compose/.env"
compose=()
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
fi
if [ ${#compose[@]} -eq 0 ]; then
    fail "neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)"
else
    # -q: validate only; the rendered config would contain .env values.
    if (cd "$tmp/compose" && "${compose[@]}" -f deploy/docker-compose.yml config -q); then
        ok "${compose[*]} config -q (client only)"
    else
        fail "${compose[*]} config rejected deploy/docker-compose.yml"
    fi
fi

if python3 -c 'import yaml' 2>/dev/null; then
    if python3 - "$here/docker-compose.yml" <<'PY'
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
errors = []
secretish = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|WEBHOOK|DATABASE_URL)", re.I)
for name, svc in doc.get("services", {}).items():
    for p in svc.get("ports", []) or []:
        p = str(p)
        if p.count(":") < 2 or not p.startswith("127.0.0.1:"):
            errors.append(f"{name}: port '{p}' is not bound to 127.0.0.1")
    env = svc.get("environment") or {}
    items = env.items() if isinstance(env, dict) else [tuple(e.split("=", 1)) + ("",) for e in env]
    for item in items:
        k = item[0]
        if secretish.search(str(k)) and k != "POSTGRES_INITDB_ARGS":
            errors.append(f"{name}: '{k}' set in environment:, secrets must come from env_file")
    if name in ("postgres", "aegis") and "../.env" not in (svc.get("env_file") or []):
        errors.append(f"{name}: env_file ../.env missing")
    if name in ("postgres", "aegis") and "healthcheck" not in svc:
        errors.append(f"{name}: no healthcheck")
for e in errors:
    print("   ", e)
sys.exit(1 if errors else 0)
PY
    then ok "compose rules: 127.0.0.1-only ports, env_file secrets, health checks"; else fail "compose rules"; fi
else
    fail "python3-yaml missing (apt-get install python3-yaml): compose rules not checked"
fi

df="$here/Dockerfile"
if grep -Eiq '^\s*(ENV|ARG)\b.*(KEY|SECRET|PASSWORD|TOKEN|WEBHOOK|DATABASE_URL)' "$df"; then
    fail "Dockerfile sets a secret-looking ENV/ARG"
elif grep -Eq '^\s*COPY\b.*\.env' "$df"; then
    fail "Dockerfile copies .env"
elif ! grep -Eq '^\s*USER\s+[a-z]' "$df" || grep -Eq '^\s*USER\s+(root|0)\b' "$df"; then
    fail "Dockerfile does not switch to a non-root USER"
elif [ "$(grep -c '^FROM ' "$df")" -lt 2 ]; then
    fail "Dockerfile is not multi-stage"
else
    ok "Dockerfile: multi-stage, non-root, no secrets, no .env"
fi
missing=""
for pat in '.env' 'target' 'data'; do
    grep -qx "$pat" "$root/.dockerignore" 2>/dev/null || missing="$missing $pat"
done
if [ -z "$missing" ]; then ok ".dockerignore excludes .env, target, data"; else fail ".dockerignore lacks:$missing"; fi

# ---------------------------------------------------------------- 4. systemd unit
section "systemd unit"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$tmp/unit"
    # verify wants ExecStart to exist; the real path is only there on an installed box.
    sed -e 's#/opt/aegis/bin/aegis#/bin/true#g' "$here/aegis.service" > "$tmp/unit/aegis.service"
    out="$(systemd-analyze verify "$tmp/unit/aegis.service" 2>&1)"; rc=$?
    if [ "$rc" -eq 0 ] && ! grep -q "aegis.service" <<<"$out"; then
        ok "systemd-analyze verify aegis.service"
    else
        echo "$out"; fail "systemd-analyze verify aegis.service"
    fi
else
    echo "  notice: systemd-analyze not installed; unit not verified"
fi
for key in NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths= EnvironmentFile= Restart=on-failure CPUAffinity=; do
    grep -q "^$key" "$here/aegis.service" || fail "aegis.service lacks $key"
done

# ---------------------------------------------------------------- 5. health-check.sh
section "health-check.sh"
need_ok=1
for t in python3 openssl curl; do command -v "$t" >/dev/null || { fail "$t missing: health-check test skipped"; need_ok=0; }; done
if [ "$need_ok" -eq 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$tmp/api-key.pem" -out "$tmp/api-cert.pem" >/dev/null 2>&1
    echo ok > "$tmp/status"
    : > "$tmp/alerts.log"
    python3 "$here/test/health_fixture.py" --cert "$tmp/api-cert.pem" --key "$tmp/api-key.pem" \
        --status-file "$tmp/status" --log "$tmp/alerts.log" --port-file "$tmp/ports" &
    fixture_pid=$!
    for _ in $(seq 1 50); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
    read -r recv_port api_port < "$tmp/ports" || true
    # A port nothing listens on: bind and release one.
    dead_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    tg_token="123456:SECRET-telegram-token-xyz"
    hook_secret="hooksecret-$RANDOM$RANDOM"
    base="http://127.0.0.1:$recv_port"
    hc() {
        # Runs health-check.sh with every channel pointed at the receiver; prints its exit code, keeps its output.
        # DISK_MAX_PERCENT=101: the disk check must not depend on how full the CI host's disk is (a run on a
        # host at >=90% once turned "up" into "degraded"); the disk branch has its own case below.
        env -i PATH="$PATH" HOME="$tmp" ENV_FILE=/dev/null HEALTH_STATE_FILE="$tmp/state" DATA_DIR="$tmp" \
            AEGIS_CACERT="$tmp/api-cert.pem" AEGIS_HEALTH_URL="$1" \
            ALERT_WEBHOOK_URL="$base/hook/$hook_secret" ALERT_SLACK_WEBHOOK_URL="$base/slack/$hook_secret" \
            ALERT_DISCORD_WEBHOOK_URL="$base/discord/$hook_secret" ALERT_TELEGRAM_BOT_TOKEN="$tg_token" \
            ALERT_TELEGRAM_CHAT_ID="-1001" ALERT_TELEGRAM_API_BASE="$base/tg" DISK_MAX_PERCENT=101 "${@:2}" \
            bash "$here/health-check.sh" "${hc_args[@]}" >"$tmp/hc.last" 2>&1
        local rc=$?
        # hc.last: this run alone, for the report's lines; hc.out: every run, for the no-secret check.
        cat "$tmp/hc.last" >> "$tmp/hc.out"
        echo "$rc"
    }
    hc_args=()
    count() { grep -c "$1" "$tmp/alerts.log" || true; }

    rc="$(hc "https://127.0.0.1:$dead_port/api/health")"
    if [ "$rc" = 2 ] && [ "$(count '"path": "/hook/')" = 1 ] && grep -q 'bot_stopped' "$tmp/alerts.log"; then
        ok "down: exit 2 and one bot_stopped alert"
    else fail "down: exit $rc, alerts: $(wc -l < "$tmp/alerts.log")"; fi
    if python3 - "$tmp/alerts.log" "$tg_token" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["path"].split("/")[1]: json.loads(r["body"]) for r in rows}
assert by["hook"]["kind"] == "bot_stopped" and by["hook"]["severity"] == "critical", by["hook"]
assert "DOWN" in by["slack"]["text"], by["slack"]
assert "DOWN" in by["discord"]["content"], by["discord"]
tg = [r for r in rows if r["path"].startswith("/tg/bot" + sys.argv[2] + "/sendMessage")]
assert tg and json.loads(tg[0]["body"])["chat_id"] == "-1001", rows
PY
    then ok "alert JSON: webhook kind/severity, Slack text, Discord content, Telegram sendMessage"
    else fail "alert JSON shapes"; fi

    rc="$(hc "https://127.0.0.1:$dead_port/api/health")"
    if [ "$rc" = 2 ] && [ "$(count '"path": "/hook/')" = 1 ]; then ok "still down: no repeated alert"
    else fail "still down: exit $rc, webhook alerts $(count '"path": "/hook/')"; fi

    rc="$(hc "https://127.0.0.1:$api_port/api/health")"
    if [ "$rc" = 0 ] && [ "$(count 'bot_recovered')" = 1 ]; then ok "up (verified with --cacert): exit 0, one recovery alert"
    else fail "up: exit $rc, recovered alerts $(count bot_recovered)"; fi

    echo degraded > "$tmp/status"
    rc="$(hc "https://127.0.0.1:$api_port/api/health")"
    if [ "$rc" = 1 ] && [ "$(count 'bot_degraded')" = 1 ]; then ok "degraded: exit 1, one alert"
    else fail "degraded: exit $rc"; fi

    echo ok > "$tmp/status"
    rc="$(hc "https://127.0.0.1:$api_port/api/health" AEGIS_CACERT=/nonexistent)"
    if [ "$rc" = 2 ] && grep -q "certificate not trusted" "$tmp/hc.out"; then ok "untrusted certificate: treated as down"
    else fail "untrusted certificate: exit $rc"; fi
    rc="$(hc "https://127.0.0.1:$api_port/api/health" AEGIS_CACERT=/nonexistent AEGIS_HEALTH_INSECURE=1)"
    if [ "$rc" = 0 ]; then ok "AEGIS_HEALTH_INSECURE=1 (-k) on loopback: up"; else fail "insecure mode: exit $rc"; fi

    : > "$tmp/state"
    rc="$(hc "https://127.0.0.1:$api_port/api/health" DISK_MAX_PERCENT=0)"
    if [ "$rc" = 1 ] && grep -q "disk .*% full on the data directory" "$tmp/hc.out"; then ok "data disk over DISK_MAX_PERCENT: degraded"
    else fail "disk full: exit $rc"; fi

    if grep -q "daily report" "$tmp/hc.out"; then fail "the daily report was printed without --report"
    else ok "no daily report without --report"; fi

    # --report (guide §6.1). systemctl is a test double (a container has no systemd to ask): it answers for the
    # aegis unit from $tmp/unit-state and records its arguments.
    mkdir -p "$tmp/fakebin"
    cat > "$tmp/fakebin/systemctl" <<FAKE
#!/bin/sh
echo "\$*" >> "$tmp/systemctl.args"
[ -s "$tmp/unit-state" ] || exit 1
case "\$1" in
    list-unit-files) exit 0 ;;
    is-active) cat "$tmp/unit-state"; [ "\$(cat "$tmp/unit-state")" = active ] || exit 3 ;;
    *) exit 1 ;;
esac
FAKE
    chmod +x "$tmp/fakebin/systemctl"
    fake_path="PATH=$tmp/fakebin:$PATH"
    db_pass="report-pw-$RANDOM$RANDOM"
    pg_addr="${AEGIS_TEST_PG:-127.0.0.1:5432}"
    data_mount="$(df -P "$tmp" | awk 'NR==2 {print $NF}')"
    data_mount_re="$(python3 -c 'import re, sys; print(re.escape(sys.argv[1]))' "$data_mount")"
    size_re='[0-9]+ (bytes|kB|MB|GB|TB)'
    hc_args=(--report)

    : > "$tmp/state"; echo active > "$tmp/unit-state"; : > "$tmp/systemctl.args"
    if command -v psql >/dev/null && psql -X -A -t -d "postgres://postgres@$pg_addr/postgres?connect_timeout=3" \
            -c 'SELECT 1' >/dev/null 2>&1; then
        rc="$(hc "https://127.0.0.1:$api_port/api/health" "$fake_path" \
            DATABASE_URL="postgres://postgres:$db_pass@$pg_addr/postgres?sslmode=disable")"
        if [ "$rc" = 0 ] && in_order "$tmp/hc.last" 'health-check: .* state=ok \(API healthy\)' '' \
                '=== Aegis daily report \(.*\) ===' 'service: active' 'health: ok \(API healthy\)' '' 'Disk usage:' \
                'Filesystem .*' ".* [0-9]+% $data_mount_re" '' 'Database size:' "$size_re" '=== end of report ===' \
            && grep -qx 'is-active aegis.service' "$tmp/systemctl.args" && ! grep -q "$db_pass" "$tmp/hc.last"; then
            ok "--report, bot up: exit 0, service active, health, data disk, database size; no password"
        else cat "$tmp/hc.last"; fail "--report, bot up: exit $rc"; fi
    else
        echo "  notice: no Postgres at $pg_addr (AEGIS_TEST_PG): the report's database size not checked against a server"
    fi

    : > "$tmp/state"; echo failed > "$tmp/unit-state"
    rc="$(hc "https://127.0.0.1:$dead_port/api/health" "$fake_path" \
        DATABASE_URL="postgres://postgres:$db_pass@127.0.0.1:$dead_port/postgres?connect_timeout=3")"
    if [ "$rc" = 2 ] && in_order "$tmp/hc.last" '=== Aegis daily report \(.*\) ===' 'service: failed' \
            'health: down \(API not reachable \(connection refused\): the bot is not running\)' 'Disk usage:' \
            ".* [0-9]+% $data_mount_re" 'Database size:' 'could not check' '=== end of report ===' \
        && ! grep -q "$db_pass" "$tmp/hc.last"; then
        ok "--report, bot down: exit 2, service failed, health down, database 'could not check'; no password"
    else cat "$tmp/hc.last"; fail "--report, bot down: exit $rc"; fi

    : > "$tmp/state"; : > "$tmp/unit-state"
    rc="$(hc "https://127.0.0.1:$api_port/api/health" "$fake_path")"
    if [ "$rc" = 0 ] && in_order "$tmp/hc.last" '=== Aegis daily report \(.*\) ===' 'health: ok \(API healthy\)' \
            '=== end of report ===' && ! grep -q -e '^service:' -e '^Database size:' "$tmp/hc.last"; then
        ok "--report without the unit or DATABASE_URL: no service or database lines"
    else cat "$tmp/hc.last"; fail "--report without unit/database: exit $rc"; fi
    hc_args=()

    if grep -q -e "$tg_token" -e "$hook_secret" "$tmp/hc.out"; then fail "health-check printed a secret"
    else ok "no webhook URL or token in health-check output"; fi
fi

# ---------------------------------------------------------------- 6. ufw.sh
section "ufw.sh (dry run)"
out="$(bash "$here/ufw.sh" --admin-ip 203.0.113.45 2>&1)"; rc=$?
if [ "$rc" -eq 0 ] && grep -q "ufw default deny incoming" <<<"$out" \
    && grep -q "ufw allow from 203.0.113.45 to any port 22 proto tcp" <<<"$out" \
    && grep -q "ufw allow 80/tcp" <<<"$out" && grep -q "ufw allow 443/tcp" <<<"$out" \
    && ! grep -q "5432" <<<"$out" && ! grep -q "^+ " <<<"$out"; then
    ok "ufw.sh dry run prints the guide's rules and runs nothing"
else echo "$out"; fail "ufw.sh dry run"; fi
# §7.3 lockdown: the public web rules are deleted and 80/443 allowed from the admin address only, all before the
# firewall is enabled; nothing may open 80 or 443 to everyone.
out="$(bash "$here/ufw.sh" --admin-ip 203.0.113.45 --lockdown 2>&1)"; rc=$?
printf '%s\n' "$out" > "$tmp/ufw-lockdown.out"
if [ "$rc" -eq 0 ] && in_order "$tmp/ufw-lockdown.out" 'ufw default deny incoming' \
        'ufw allow from 203\.0\.113\.45 to any port 22 proto tcp .*' \
        'ufw --force delete allow 80/tcp' 'ufw --force delete allow 443/tcp' \
        'ufw allow from 203\.0\.113\.45 to any port 80 proto tcp .*' \
        'ufw allow from 203\.0\.113\.45 to any port 443 proto tcp .*' 'ufw --force enable' \
    && [ "$(grep -c '^ufw --force enable$' <<<"$out")" = 1 ] \
    && ! grep -Eq '^ufw allow (80|443)/tcp' <<<"$out" && ! grep -q "^+ " <<<"$out"; then
    ok "ufw.sh --lockdown dry run: 80/443 from the admin IP only, public rules deleted, before enable"
else echo "$out"; fail "ufw.sh --lockdown dry run"; fi
if ! bash "$here/ufw.sh" >/dev/null 2>&1 && ! bash "$here/ufw.sh" --admin-ip 0.0.0.0/0 >/dev/null 2>&1 \
    && ! bash "$here/ufw.sh" --admin-ip 'not-an-ip' >/dev/null 2>&1; then
    ok "ufw.sh refuses a missing, world-wide or malformed admin address"
else fail "ufw.sh accepted a bad admin address"; fi

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "deploy/check.sh: all $passed checks ok"
    exit 0
fi
echo "deploy/check.sh: ${#failures[@]} check(s) FAILED (${passed} ok):"
printf '  - %s\n' "${failures[@]}"
exit 1
