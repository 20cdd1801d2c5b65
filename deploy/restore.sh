#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh, verify it, and record that a restore was tested (security guide §3.2:
# a backup nobody restored is not a backup).
#
#   deploy/restore.sh [--no-halt] [--yes] [--target DBNAME] [--drop-old] BACKUP.sql.gz
#
#   --target DBNAME  database to restore into (default: the one in DATABASE_URL / PGDATABASE). Use a scratch name
#                    for a restore *test* that leaves the live database alone.
#   --no-halt        do not try to halt trading first (you restore into a scratch DB, or you accept restoring
#                    under a bot that may still trade)
#   --yes            do not ask before replacing an existing target database
#   --drop-old       drop the replaced database instead of keeping it as <target>_old_<timestamp>
#
# Steps:
#   1. Halt trading through the bot's local API (`aegis halt`). If no bot is running (`aegis halt` exits 3: the
#      connection to API_PORT is refused) the script says so and goes on. Any other failure (a bot answers but
#      refuses the halt, no aegis binary, a timeout) stops the restore before anything is touched: a bot may still
#      be trading. Stop the bot, or pass --no-halt deliberately.
#   2. Load the dump into a fresh database <target>_restoring, with triggers off (session_replication_role =
#      replica, needs a superuser) so the audit rows come back byte for byte instead of being re-chained.
#   3. Verify: the row count of every table equals the number of rows in the dump, and the audit hash chain holds
#      (the same check as `aegis audit verify`, as one SQL statement that does not trust any restored function).
#   4. Swap it in: the old target is renamed (or dropped with --drop-old), <target>_restoring becomes <target>.
#   5. Append a `restore` row to the audit log and write DATA_DIR/restore-tested (read by `aegis preflight`).
# When step 1 halted trading, it stays halted afterwards: check, then `aegis resume`.
#
# Settings as for backup.sh: DATABASE_URL or PG* variables (role must be a superuser, e.g. postgres), DATA_DIR
# (default /var/lib/aegis), AEGIS_BIN (default: `aegis` on PATH, else ./bin/aegis or /opt/aegis/bin/aegis),
# PGMAINTDB (database to connect to for CREATE/DROP, default postgres). The password is never printed.
set -Eeuo pipefail
umask 077

usage() { sed -n '2,29p' "$0"; }

halt=1
halted=0
yes=0
drop_old=0
target=""
file=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-halt) halt=0 ;;
        --yes) yes=1 ;;
        --drop-old) drop_old=1 ;;
        --target) shift; target="${1:-}" ;;
        --target=*) target="${1#--target=}" ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "restore: unknown option '$1' (see --help)" >&2; exit 64 ;;
        *) [ -z "$file" ] || { echo "restore: only one backup file, please" >&2; exit 64; }; file="$1" ;;
    esac
    shift
done
[ -n "$file" ] || { echo "restore: which backup? usage: deploy/restore.sh [options] BACKUP.sql.gz" >&2; exit 64; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=pg-env.sh
. "$here/pg-env.sh"
aegis_pg_env || exit 2

for tool in psql gzip awk; do
    command -v "$tool" >/dev/null || { echo "restore: $tool not found (install postgresql-client)" >&2; exit 2; }
done
[ -n "$target" ] || target="${PGDATABASE:-}"
[ -n "$target" ] || { echo "restore: no target database (set DATABASE_URL or pass --target)" >&2; exit 2; }
# Postgres names stop at 63 bytes; <target>_old_<timestamp> must fit.
if [[ ! "$target" =~ ^[A-Za-z_][A-Za-z0-9_]{0,41}$ ]]; then
    echo "restore: target database name '$target' must be letters, digits and _ (at most 42 characters)" >&2
    exit 2
fi
[ -r "$file" ] || { echo "restore: cannot read backup file '$file'" >&2; exit 2; }
gzip -t "$file" || { echo "restore: '$file' is not a valid gzip file (truncated backup?)" >&2; exit 1; }

data_dir="$(aegis_setting DATA_DIR /var/lib/aegis)"
maint="$(aegis_setting PGMAINTDB postgres)"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="${target}_restoring"
old="${target}_old_${stamp}"

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# The aegis binary (halt, audit verify), if there is one.
bin="$(aegis_setting AEGIS_BIN)"
if [ -z "$bin" ]; then
    if command -v aegis >/dev/null; then bin="$(command -v aegis)"
    elif [ -x ./bin/aegis ]; then bin=./bin/aegis
    elif [ -x /opt/aegis/bin/aegis ]; then bin=/opt/aegis/bin/aegis
    fi
fi
# The binary gets the settings file this script read (ENV_FILE, ./.env or /opt/aegis/.env): on its own it reads
# ./.env only, so run from another directory it would look for the bot in the wrong DATA_DIR / API_PORT.
bin_env="${aegis_env_file:-/dev/null}"

# --- 1. halt trading ---------------------------------------------------------------------------------------------
if [ "$halt" -eq 1 ]; then
    no_halt_hint="stop the bot (systemctl stop aegis) or halt it yourself, then run again with --no-halt; nothing was restored"
    [ -n "$bin" ] || { echo "restore: no aegis binary found (set AEGIS_BIN) to halt trading; $no_halt_hint" >&2; exit 2; }
    rc=0
    timeout 20 "$bin" --env-file "$bin_env" halt || rc=$?
    case "$rc" in
        0) halted=1; echo "Trading halted through the bot's local API." ;;
        # aegis halt: 3 = nothing listens on API_PORT (control/src/ops/admin.rs EXIT_NOT_RUNNING).
        3) echo "No bot is running (nothing listens on its API port): nothing to halt, restoring." ;;
        *)
            echo "restore: could not halt trading ($bin halt exit $rc) and a bot may still be trading." >&2
            echo "restore: $no_halt_hint" >&2
            exit 1
            ;;
    esac
fi

# --- 2. load into a fresh database ----------------------------------------------------------------------------
if [ "$(q -d "$maint" -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" != "t" ]; then
    echo "restore: the restoring role must be a superuser (it loads the audit log with triggers off)." >&2
    exit 2
fi
# (psql interpolates :'var' only in SQL read from stdin, not in -c.)
exists="$(q -d "$maint" -v t="$target" <<< "SELECT count(*) FROM pg_database WHERE datname = :'t'")"
if [ "$exists" != "0" ] && [ "$yes" -ne 1 ]; then
    if [ -t 0 ]; then
        read -r -p "Replace database '$target' with the contents of $file? Type yes: " answer
        [ "$answer" = "yes" ] || { echo "restore: cancelled" >&2; exit 1; }
    else
        echo "restore: database '$target' exists; pass --yes to replace it (it is kept as ${old} unless --drop-old)" >&2
        exit 1
    fi
fi
# The dump's GRANTs name aegis_app; a fresh cluster may not have it yet.
q -d "$maint" -c "DO \$\$ BEGIN CREATE ROLE aegis_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"
q -d "$maint" -c "DROP DATABASE IF EXISTS \"$work\" WITH (FORCE)"
q -d "$maint" -c "CREATE DATABASE \"$work\""
cleanup_work() { q -d "$maint" -c "DROP DATABASE IF EXISTS \"$work\" WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup_work ERR

echo "Loading $file into $work ..."
if ! gzip -dc "$file" | PGOPTIONS="-c session_replication_role=replica" \
        psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$work" >/dev/null; then
    echo "restore: loading the dump FAILED; '$target' was not touched" >&2
    cleanup_work
    exit 1
fi

# --- 3. verify ----------------------------------------------------------------------------------------------------
# Rows per table in the dump: the lines of each COPY block (COPY text format escapes newlines, one row per line).
expected="$(gzip -dc "$file" | awk '
    /^COPY / { t = $2; sub(/^public\./, "", t); gsub(/"/, "", t); n = 0; inside = 1; next }
    inside && /^\\\.$/ { print t, n; inside = 0; next }
    inside { n++ }')"
[ -n "$expected" ] || { echo "restore: the dump holds no table data; is it an Aegis backup?" >&2; cleanup_work; exit 1; }
bad=0
tables=0
rows=0
while read -r table n; do
    [ -n "$table" ] || continue
    got="$(q -d "$work" -c "SELECT count(*) FROM public.\"$table\"")"
    tables=$((tables + 1))
    rows=$((rows + got))
    if [ "$got" != "$n" ]; then
        echo "restore: table $table has $got rows, the dump has $n" >&2
        bad=1
    fi
done <<< "$expected"
[ "$bad" -eq 0 ] || { echo "restore: row counts differ; '$target' was not touched" >&2; cleanup_work; exit 1; }
echo "Row counts match the dump: $tables tables, $rows rows."

# The audit chain (same serialization as control/src/db/audit.rs; keep the two in step).
verify_sql="WITH c AS (SELECT id, prev_hash, hash,
    coalesce(lag(hash) OVER (ORDER BY id), repeat('0', 64)) AS expected_prev,
    encode(sha256(convert_to('aegis-audit-v1' || E'\\n' || id::text || E'\\n'
      || (extract(epoch FROM ts) * 1000000)::bigint::text || E'\\n'
      || octet_length(actor)::text || ':' || actor || E'\\n'
      || octet_length(source_ip)::text || ':' || source_ip || E'\\n'
      || octet_length(action)::text || ':' || action || E'\\n'
      || octet_length(detail)::text || ':' || detail || E'\\n' || prev_hash, 'UTF8')), 'hex') AS computed
    FROM audit_log)
  SELECT coalesce(min(id)::text, 'ok') FROM c WHERE prev_hash <> expected_prev OR hash <> computed"
# Prefer the bot's own verifier, `aegis audit verify` (exit 0 holds, 1 broken naming the row, 2 cannot check),
# pointed at the restored copy; the psql statement is the fallback when there is no binary or it cannot connect.
chain=""
if [ -n "$bin" ]; then
    # A postgres:// URL for the restored copy (percent-encoded); the password only in this process' environment.
    urlenc() {
        local LC_ALL=C s="$1" out="" c i
        for ((i = 0; i < ${#s}; i++)); do
            c="${s:i:1}"
            case "$c" in
                [A-Za-z0-9._~-]) out+="$c" ;;
                *) printf -v c '%%%02X' "'$c"; out+="$c" ;;
            esac
        done
        printf '%s' "$out"
    }
    cred="$(urlenc "${PGUSER:-$(id -un)}")"
    [ -z "${PGPASSWORD:-}" ] || cred="$cred:$(urlenc "$PGPASSWORD")"
    pghost="${PGHOST:-127.0.0.1}"
    if [ "${pghost#/}" != "$pghost" ]; then
        work_conn="postgres://$cred@localhost:${PGPORT:-5432}/$(urlenc "$work")?host=$(urlenc "$pghost")"
    else
        work_conn="postgres://$cred@$(urlenc "$pghost"):${PGPORT:-5432}/$(urlenc "$work")?sslmode=${PGSSLMODE:-prefer}"
    fi
    if out="$(DATABASE_URL="$work_conn" timeout 300 "$bin" --env-file "$bin_env" audit verify 2>/dev/null)"; then
        chain=ok
        echo "aegis: $out"
    else
        rc=$?
        if [ "$rc" -eq 1 ]; then
            chain="$(printf '%s\n' "$out" | sed -n 's/.*BROKEN at row id \([0-9][0-9]*\).*/\1/p' | head -n 1)"
            [ -n "$chain" ] || chain="unknown"
        else
            echo "restore: '$bin audit verify' could not check the chain (exit $rc); checking with psql instead" >&2
        fi
    fi
fi
if [ -z "$chain" ]; then
    chain="$(q -d "$work" -c "$verify_sql")" || { echo "restore: cannot check the audit chain (no audit_log?)" >&2; cleanup_work; exit 1; }
fi
if [ "$chain" != "ok" ]; then
    echo "restore: the audit chain in the backup is BROKEN at row id $chain; '$target' was not touched" >&2
    cleanup_work
    exit 1
fi
audit_rows="$(q -d "$work" -c "SELECT count(*) FROM audit_log")"
echo "Audit chain verified: $audit_rows rows."

# --- 4. swap ------------------------------------------------------------------------------------------------------
if [ "$exists" != "0" ]; then
    # Keep the bot's writer from reconnecting between the terminate and the rename.
    q -d "$maint" -c "ALTER DATABASE \"$target\" ALLOW_CONNECTIONS false"
    q -d "$maint" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$target'" >/dev/null
    sleep 0.2
    if [ "$drop_old" -eq 1 ]; then
        q -d "$maint" -c "DROP DATABASE \"$target\" WITH (FORCE)"
        echo "Dropped the previous '$target'."
    else
        q -d "$maint" -c "ALTER DATABASE \"$target\" RENAME TO \"$old\""
        q -d "$maint" -c "ALTER DATABASE \"$old\" ALLOW_CONNECTIONS true"
        echo "The previous '$target' is kept as '$old' (drop it when you are satisfied)."
    fi
fi
q -d "$maint" -c "ALTER DATABASE \"$work\" RENAME TO \"$target\""
trap - ERR

# --- 5. record ----------------------------------------------------------------------------------------------------
actor="restore.sh:$(id -un)"
q -d "$target" -v actor="$actor" -v file="$(basename "$file")" -v rows="$rows" >/dev/null <<< \
    "INSERT INTO audit_log (actor, source_ip, action, detail) VALUES (:'actor', 'local', 'restore',
     json_build_object('backup', :'file', 'rows', (:'rows')::bigint)::text)"
head="$(q -d "$target" -F ' ' -c "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")"

mkdir -p "$data_dir"
marker="$data_dir/restore-tested"
{
    echo "tested_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "backup=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
    echo "database=$target"
    echo "tables=$tables"
    echo "rows=$rows"
    echo "audit_rows=$audit_rows"
    echo "audit_head=$head"
} > "$marker.tmp"
mv "$marker.tmp" "$marker"
echo "Restore of $file into '$target' verified; marker written to $marker."
if [ "$halted" -eq 1 ]; then
    echo "Trading stays halted: check the dashboard, then resume with 'aegis resume'."
else
    echo "Trading was not halted by this restore (--no-halt, or no bot was running): if the bot runs, check it."
fi
