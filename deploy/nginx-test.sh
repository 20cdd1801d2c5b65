#!/usr/bin/env bash
# Runs `nginx -t` on deploy/nginx.conf without touching the system's nginx: the config is copied into a temporary
# prefix, its absolute paths (certs, logs, pid, temp dirs) are pointed into that prefix, and throwaway certificates
# are generated with openssl, because nginx -t refuses a config whose certificate files do not exist.
# Usage: deploy/nginx-test.sh [path/to/nginx.conf]     Needs: nginx (Debian's), openssl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf="${1:-$here/nginx.conf}"

command -v nginx >/dev/null || { echo "nginx-test: nginx not installed (apt-get install nginx)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "nginx-test: openssl not installed" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/certs" "$tmp/logs" "$tmp/temp" "$tmp/www"

# Throwaway certificates: the public one for nginx and one standing in for the bot's own (CN/SAN localhost).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=aegis.test" \
    -keyout "$tmp/certs/key.pem" -out "$tmp/certs/cert.pem" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$tmp/certs/upstream-key.pem" -out "$tmp/certs/aegis-upstream.pem" >/dev/null 2>&1

sed -e "s#/etc/nginx/certs/#$tmp/certs/#g" \
    -e "s#/var/log/nginx/#$tmp/logs/#g" \
    -e "s#/run/nginx.pid#$tmp/nginx.pid#g" \
    -e "s#/var/www/certbot#$tmp/www#g" \
    "$conf" > "$tmp/nginx.conf"

# Debian's nginx has compiled-in temp paths under /var/lib/nginx that nginx -t wants to create; keep them inside
# the prefix so the test runs without a system nginx install having been initialised.
sed -i "s#^http {#http {\n    client_body_temp_path $tmp/temp/body;\n    proxy_temp_path $tmp/temp/proxy;\n    fastcgi_temp_path $tmp/temp/fastcgi;\n    uwsgi_temp_path $tmp/temp/uwsgi;\n    scgi_temp_path $tmp/temp/scgi;#" "$tmp/nginx.conf"

# Non-root runs cannot switch to www-data; that is the only thing left out of the test then.
if [ "$(id -u)" -ne 0 ]; then
    sed -i 's#^user .*;#\# user (dropped: test runs as non-root)#' "$tmp/nginx.conf"
fi

nginx -t -q -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log"
echo "nginx-test: $conf OK"
