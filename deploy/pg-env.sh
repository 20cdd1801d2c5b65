# shellcheck shell=bash
# Shared by deploy/backup.sh and deploy/restore.sh (sourced, not run): finds the database settings and turns them
# into libpq's PG* environment variables, so no password ever appears on a command line (other local users can read
# /proc/*/cmdline) or in output.
#
# Sources, first match wins per setting:
#   1. DATABASE_URL (environment, else ENV_FILE / ./.env / /opt/aegis/.env, read without executing the file):
#      postgres://user:password@host:port/dbname?sslmode=... (percent-encoded parts are decoded)
#   2. PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE as libpq reads them (and ~/.pgpass).

aegis_env_file="${ENV_FILE:-}"
if [ -z "$aegis_env_file" ]; then
    if [ -f ./.env ]; then aegis_env_file=./.env; elif [ -f /opt/aegis/.env ]; then aegis_env_file=/opt/aegis/.env; fi
fi

# Reads KEY=value from the env file without sourcing it (sourcing would execute whatever the file contains).
aegis_from_env_file() {
    local key="$1" line val
    [ -n "$aegis_env_file" ] && [ -r "$aegis_env_file" ] || return 0
    line="$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}=" "$aegis_env_file" | tail -n 1)" || return 0
    val="${line#*=}"
    val="${val%$'\r'}"
    if [[ "$val" == \"*\" || "$val" == \'*\' ]]; then val="${val:1:${#val}-2}"; fi
    printf '%s' "$val"
}

# Environment first, then the env file, then the default.
aegis_setting() {
    local key="$1" default="${2:-}" val
    val="${!key:-}"
    [ -n "$val" ] || val="$(aegis_from_env_file "$key")"
    [ -n "$val" ] || val="$default"
    printf '%s' "$val"
}

# Decodes %XX escapes.
aegis_urldecode() {
    local s="${1//+/%2B}"
    printf '%b' "${s//%/\\x}"
}

# Exports PG* variables from DATABASE_URL if one is set; otherwise leaves libpq's own PG* settings alone.
# Fails (return 1, message on stderr without the URL) when DATABASE_URL is set but not understood.
aegis_pg_env() {
    local url userinfo hostport path query user pass host port db kv k v
    url="$(aegis_setting DATABASE_URL)"
    [ -n "$url" ] || return 0
    if [[ ! "$url" =~ ^postgres(ql)?://([^/?]*)(/([^?]*))?(\?(.*))?$ ]]; then
        echo "DATABASE_URL is not a postgres:// URL (expected postgres://user:password@host:port/dbname)" >&2
        return 1
    fi
    hostport="${BASH_REMATCH[2]}"
    path="${BASH_REMATCH[4]}"
    query="${BASH_REMATCH[6]}"
    userinfo=""
    if [[ "$hostport" == *@* ]]; then
        userinfo="${hostport%@*}"
        hostport="${hostport##*@}"
    fi
    user="${userinfo%%:*}"
    pass=""
    if [[ "$userinfo" == *:* ]]; then pass="${userinfo#*:}"; fi
    if [[ "$hostport" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
        host="${BASH_REMATCH[1]}"; port="${BASH_REMATCH[3]}"
    else
        host="${hostport%%:*}"
        port=""
        if [[ "$hostport" == *:* ]]; then port="${hostport##*:}"; fi
    fi
    db="$path"
    if [ -n "$user" ]; then PGUSER="$(aegis_urldecode "$user")"; export PGUSER; fi
    if [ -n "$pass" ]; then PGPASSWORD="$(aegis_urldecode "$pass")"; export PGPASSWORD; fi
    if [ -n "$host" ]; then PGHOST="$(aegis_urldecode "$host")"; export PGHOST; fi
    if [ -n "$port" ]; then PGPORT="$port"; export PGPORT; fi
    if [ -n "$db" ]; then PGDATABASE="$(aegis_urldecode "$db")"; export PGDATABASE; fi
    if [ -n "$query" ]; then
        local IFS='&'
        for kv in $query; do
            k="${kv%%=*}"; v="$(aegis_urldecode "${kv#*=}")"
            case "$k" in
                sslmode) export PGSSLMODE="$v" ;;
                sslrootcert) export PGSSLROOTCERT="$v" ;;
                connect_timeout) export PGCONNECT_TIMEOUT="$v" ;;
                *) ;;
            esac
        done
    fi
    return 0
}
