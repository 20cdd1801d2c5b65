#!/usr/bin/env bash
# Outside watchdog for Aegis (guide §6.1, §6.2 "bot stops running"): asks the running bot's API for its health and
# raises an alert when it is down or degraded. Run it every minute from cron or a systemd timer
# (deploy/crontab.example); the bot's in-process alerts cannot report their own death, this can.
#
#   deploy/health-check.sh            # exit 0 healthy, 1 degraded (or disk nearly full), 2 down
#   deploy/health-check.sh --report   # also print the §6.1 daily report (disk, DB size, service state)
#
# TLS: the bot serves HTTPS with its own certificate. The check verifies it with --cacert AEGIS_CACERT (default
# DATA_DIR/tls/cert.pem, the bot's generated certificate). AEGIS_HEALTH_INSECURE=1 switches to curl -k instead,
# acceptable only because the URL is loopback (nobody else can sit between two processes on 127.0.0.1).
#
# Settings (environment, or read from ENV_FILE without executing it):
#   AEGIS_HEALTH_URL         default https://127.0.0.1:8090/api/health
#   AEGIS_CACERT             CA/cert file for --cacert (default $DATA_DIR/tls/cert.pem)
#   AEGIS_HEALTH_INSECURE    1 = curl -k (loopback only)
#   ENV_FILE                 default ./.env, else /opt/aegis/.env; ALERT_* and DATA_DIR are read from it
#   ALERT_WEBHOOK_URL, ALERT_SLACK_WEBHOOK_URL, ALERT_DISCORD_WEBHOOK_URL,
#   ALERT_TELEGRAM_BOT_TOKEN + ALERT_TELEGRAM_CHAT_ID (+ ALERT_TELEGRAM_API_BASE)   alert channels, any subset
#   HEALTH_STATE_FILE        remembers the last state so a long outage alerts once, then every
#   HEALTH_REALERT_MINUTES   minutes (default 30); recovery sends one "recovered" alert
#   DISK_MAX_PERCENT         alert (degraded) when the DATA_DIR filesystem is fuller than this (default 90)
#
# Secrets: webhook URLs and the Telegram token are passed to curl in a 0600 temp config file, never on the command
# line (other local users can read /proc/*/cmdline), and never echoed. Alert texts are built from fixed words only.
set -uo pipefail

report=0
for arg in "$@"; do
    case "$arg" in
        --report) report=1 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "health-check: unknown argument '$arg'" >&2; exit 64 ;;
    esac
done

# Reads KEY=value from the env file without sourcing it (sourcing would execute whatever the file contains).
env_file="${ENV_FILE:-}"
if [ -z "$env_file" ]; then
    if [ -f ./.env ]; then env_file=./.env; elif [ -f /opt/aegis/.env ]; then env_file=/opt/aegis/.env; fi
fi
from_env_file() {
    local key="$1" line val
    [ -n "$env_file" ] && [ -r "$env_file" ] || return 0
    line="$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}=" "$env_file" | tail -n 1)" || return 0
    val="${line#*=}"
    val="${val%$'\r'}"
    # Strip one pair of surrounding quotes.
    if [[ "$val" == \"*\" || "$val" == \'*\' ]]; then val="${val:1:${#val}-2}"; fi
    printf '%s' "$val"
}
setting() {
    # Environment first, then the env file, then the default.
    local key="$1" default="${2:-}" val
    val="${!key:-}"
    [ -n "$val" ] || val="$(from_env_file "$key")"
    [ -n "$val" ] || val="$default"
    printf '%s' "$val"
}

url="$(setting AEGIS_HEALTH_URL https://127.0.0.1:8090/api/health)"
data_dir="$(setting DATA_DIR /var/lib/aegis)"
cacert="$(setting AEGIS_CACERT "$data_dir/tls/cert.pem")"
insecure="$(setting AEGIS_HEALTH_INSECURE 0)"
state_file="$(setting HEALTH_STATE_FILE "${XDG_RUNTIME_DIR:-/tmp}/aegis-health.state")"
realert_min="$(setting HEALTH_REALERT_MINUTES 30)"
disk_max="$(setting DISK_MAX_PERCENT 90)"
host="$(hostname 2>/dev/null || echo unknown)"

umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Quotes a string for JSON (the host name is the only non-constant text that goes into an alert).
json_str() {
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/ }"; s="${s//$'\r'/ }"; s="${s//$'\t'/ }"
    printf '"%s"' "$s"
}
# Quotes a value for a curl config file.
curl_cfg_str() {
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

# POSTs JSON ($2) to a URL ($1) that may hold a token; prints nothing about the URL.
post_json() {
    local target="$1" body="$2" cfg="$tmp/curl.cfg"
    {
        printf 'url = %s\n' "$(curl_cfg_str "$target")"
        printf 'header = "Content-Type: application/json"\n'
    } > "$cfg"
    printf '%s' "$body" | curl -fsS -o /dev/null --max-time 10 --retry 2 --retry-delay 1 \
        --config "$cfg" --data-binary @- 2>/dev/null
}

# Sends one alert to every configured channel. $1 kind, $2 severity, $3 human text (fixed words + host only).
send_alert() {
    local kind="$1" severity="$2" text="$3" ts sent=0 failed=0 target
    ts="$(date +%s)000"
    local line="[aegis] ${severity^^}: $text"
    target="$(setting ALERT_WEBHOOK_URL)"
    if [ -n "$target" ]; then
        if post_json "$target" "{\"source\":\"aegis-health-check\",\"kind\":$(json_str "$kind"),\"severity\":$(json_str "$severity"),\"title\":$(json_str "$kind"),\"message\":$(json_str "$text"),\"host\":$(json_str "$host"),\"ts_ms\":$ts}"; then sent=$((sent+1)); else failed=$((failed+1)); fi
    fi
    target="$(setting ALERT_SLACK_WEBHOOK_URL)"
    if [ -n "$target" ]; then
        if post_json "$target" "{\"text\":$(json_str "$line")}"; then sent=$((sent+1)); else failed=$((failed+1)); fi
    fi
    target="$(setting ALERT_DISCORD_WEBHOOK_URL)"
    if [ -n "$target" ]; then
        if post_json "$target" "{\"content\":$(json_str "$line")}"; then sent=$((sent+1)); else failed=$((failed+1)); fi
    fi
    local tg_token tg_chat tg_base
    tg_token="$(setting ALERT_TELEGRAM_BOT_TOKEN)"
    tg_chat="$(setting ALERT_TELEGRAM_CHAT_ID)"
    tg_base="$(setting ALERT_TELEGRAM_API_BASE https://api.telegram.org)"
    if [ -n "$tg_token" ] && [ -n "$tg_chat" ]; then
        if post_json "${tg_base%/}/bot${tg_token}/sendMessage" "{\"chat_id\":$(json_str "$tg_chat"),\"text\":$(json_str "$line")}"; then sent=$((sent+1)); else failed=$((failed+1)); fi
    fi
    if [ $((sent+failed)) -eq 0 ]; then
        echo "health-check: no alert channel configured (set ALERT_WEBHOOK_URL or another ALERT_* channel)" >&2
    elif [ "$failed" -gt 0 ]; then
        echo "health-check: alert delivered to $sent channel(s), FAILED for $failed (URLs not shown)" >&2
    fi
}

# ---- the check ----
curl_tls=()
if [ "$insecure" = "1" ]; then
    curl_tls=(-k)
elif [ -r "$cacert" ]; then
    curl_tls=(--cacert "$cacert")
fi
body_file="$tmp/body"
code="$(curl -sS -o "$body_file" -w '%{http_code}' --max-time 5 "${curl_tls[@]}" "$url" 2>"$tmp/curl.err")"
curl_rc=$?
body="$(head -c 4096 "$body_file" 2>/dev/null | tr -d '\n' || true)"

state=ok
reason="API healthy"
if [ "$curl_rc" -ne 0 ] || [ "$code" = "000" ]; then
    state=down
    case "$curl_rc" in
        7) reason="API not reachable (connection refused): the bot is not running" ;;
        28) reason="API timed out: the bot is hung or overloaded" ;;
        35|51|58|60|77) reason="TLS to the API failed (certificate not trusted: set AEGIS_CACERT or AEGIS_HEALTH_INSECURE=1)" ;;
        *) reason="API request failed (curl exit $curl_rc)" ;;
    esac
elif [[ "$body" =~ \"status\"[[:space:]]*:[[:space:]]*\"(degraded|warn|warning)\" ]]; then
    state=degraded
    reason="API reports degraded (database or exchange connection lost)"
elif [[ "$code" =~ ^2 ]]; then
    state=ok
else
    state=down
    reason="API answered HTTP $code"
fi

# Disk space for DATA_DIR (journal) — a full disk stops the journal, which stops trading.
disk_pct=""
if [ -d "$data_dir" ]; then
    disk_pct="$(df -P "$data_dir" 2>/dev/null | awk 'NR==2 {gsub("%","",$5); print $5}')"
fi
if [ -n "$disk_pct" ] && [ "$state" = ok ] && [ "$disk_pct" -ge "$disk_max" ]; then
    state=degraded
    reason="disk ${disk_pct}% full on the data directory (limit ${disk_max}%)"
fi

echo "health-check: $(date -u +%FT%TZ) $host state=$state ($reason)"

# ---- alert on change, re-alert during a long outage ----
now="$(date +%s)"
prev_state=ok
prev_alert=0
if [ -r "$state_file" ]; then
    read -r prev_state prev_alert < "$state_file" || true
    [[ "$prev_alert" =~ ^[0-9]+$ ]] || prev_alert=0
fi
alerted="$prev_alert"
if [ "$state" != ok ]; then
    if [ "$state" != "$prev_state" ] || [ $((now - prev_alert)) -ge $((realert_min * 60)) ]; then
        if [ "$state" = down ]; then
            send_alert bot_stopped critical "Aegis on $host is DOWN: $reason"
        else
            send_alert bot_degraded warning "Aegis on $host is DEGRADED: $reason"
        fi
        alerted="$now"
    fi
elif [ "$prev_state" != ok ]; then
    send_alert bot_recovered info "Aegis on $host recovered: API healthy again"
    alerted=0
fi
if ! printf '%s %s\n' "$state" "$alerted" > "$state_file" 2>/dev/null; then
    echo "health-check: cannot write $state_file; alerts will repeat every run" >&2
fi

if [ "$report" -eq 1 ]; then
    echo ""
    echo "=== Aegis daily report ($host, $(date)) ==="
    if command -v systemctl >/dev/null && systemctl list-unit-files aegis.service >/dev/null 2>&1; then
        echo "service: $(systemctl is-active aegis.service 2>/dev/null || true)"
    fi
    echo "health: $state ($reason)"
    echo ""
    echo "Disk usage:"
    df -h -P "$data_dir" / 2>/dev/null | awk '!seen[$0]++'
    db_url="$(setting DATABASE_URL)"
    if [ -n "$db_url" ] && command -v psql >/dev/null; then
        echo ""
        echo "Database size:"
        # The password goes through PGPASSWORD, not argv, so it is not visible in `ps`.
        # (A percent-encoded password must be decoded in .env or kept in ~/.pgpass instead.)
        db_pass=""
        if [[ "$db_url" =~ ^(postgres(ql)?://)([^:@/]+):([^@/]*)@(.*)$ ]]; then
            db_pass="${BASH_REMATCH[4]}"
            db_url="${BASH_REMATCH[1]}${BASH_REMATCH[3]}@${BASH_REMATCH[5]}"
        fi
        PGPASSWORD="$db_pass" psql -X -A -t -d "$db_url" \
            -c "SELECT pg_size_pretty(pg_database_size(current_database()));" 2>/dev/null || echo "could not check"
    fi
    echo "=== end of report ==="
fi

case "$state" in
    ok) exit 0 ;;
    degraded) exit 1 ;;
    *) exit 2 ;;
esac
