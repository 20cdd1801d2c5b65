#!/usr/bin/env bash
# Database backup (security guide §3.2): pg_dump | gzip into BACKUP_DIR as aegis_<db>_<UTC timestamp>.sql.gz,
# then deletes backups older than BACKUP_RETENTION_DAYS. Run daily from cron (deploy/crontab.example).
#
#   deploy/backup.sh            # exit 0 on success, non-zero on any failure (nothing half-written is left behind)
#
# Settings (environment, or read from ENV_FILE / ./.env without executing it):
#   DATABASE_URL            postgres://user:password@host:port/dbname (or libpq's PGHOST/PGUSER/PGDATABASE/... vars)
#   BACKUP_DIR              default /var/backups/aegis (created 0700)
#   BACKUP_RETENTION_DAYS   default 30; 0 keeps every backup
#
# Beside each backup, <name>.audit-head records the audit chain's newest row (id and hash): an anchor outside the
# database that shows whether rows were later cut off the end of the chain (which the chain alone cannot show).
# The password is handed to pg_dump through the environment, never on a command line, and never printed.
set -Eeuo pipefail
umask 077

case "${1:-}" in
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    "") ;;
    *) echo "backup: unknown argument '$1' (see --help)" >&2; exit 64 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=pg-env.sh
. "$here/pg-env.sh"

aegis_pg_env || exit 2
backup_dir="$(aegis_setting BACKUP_DIR /var/backups/aegis)"
retention="$(aegis_setting BACKUP_RETENTION_DAYS 30)"
if [[ ! "$retention" =~ ^[0-9]+$ ]]; then
    echo "backup: BACKUP_RETENTION_DAYS must be a whole number of days, got '$retention'" >&2
    exit 2
fi
for tool in pg_dump psql gzip; do
    command -v "$tool" >/dev/null || { echo "backup: $tool not found (install postgresql-client)" >&2; exit 2; }
done
db="${PGDATABASE:-${PGUSER:-$(id -un)}}"

mkdir -p "$backup_dir"
chmod 700 "$backup_dir"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
name="aegis_${db//[^A-Za-z0-9_.-]/_}_${stamp}"
final="$backup_dir/$name.sql.gz"
partial="$final.partial"
trap 'rm -f "$partial"' EXIT

# --no-owner: restorable by whichever role runs restore.sh; privileges (the aegis_app grants) are kept.
# pipefail makes a pg_dump failure fail the pipeline even though gzip succeeded.
if ! pg_dump --no-owner --format=plain --dbname="$db" | gzip -9 > "$partial"; then
    echo "backup: pg_dump of database '$db' FAILED; no backup written" >&2
    exit 1
fi
if ! gzip -t "$partial"; then
    echo "backup: the compressed dump does not verify; no backup written" >&2
    exit 1
fi
mv "$partial" "$final"
trap - EXIT

# The chain anchor (best effort: a database without the Aegis schema has no audit log).
if head="$(psql -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 --dbname="$db" \
        -c "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1" 2>/dev/null)"; then
    printf '%s %s\n' "$stamp" "${head:-empty}" > "$backup_dir/$name.audit-head"
else
    echo "backup: warning: could not read the audit chain head (no audit_log table?)" >&2
fi

size="$(du -h "$final" | cut -f1)"
echo "Backup completed: $final ($size)"

if [ "$retention" -gt 0 ]; then
    # -mtime +N: older than N whole days.
    find "$backup_dir" -maxdepth 1 -type f \( -name 'aegis_*.sql.gz' -o -name 'aegis_*.audit-head' \) \
        -mtime +"$retention" -print -delete | sed 's/^/Deleted old backup: /'
fi
