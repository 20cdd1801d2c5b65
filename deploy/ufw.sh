#!/usr/bin/env bash
# The security guide's firewall (§2.1), and its DDoS lockdown (§7.3), as one script. Dry run by default: it prints
# the ufw commands; nothing changes until you pass --apply.
#
#   deploy/ufw.sh --admin-ip 203.0.113.45                # print the rules
#   sudo deploy/ufw.sh --admin-ip 203.0.113.45 --apply   # apply them
#   sudo deploy/ufw.sh --admin-ip 203.0.113.45 --lockdown --apply   # §7.3: 80/443 only from the admin IP too
#
# Rules: default deny incoming / allow outgoing; 22/tcp (or --ssh-port) from the admin IP only; 80/tcp and 443/tcp
# open (80 only redirects to HTTPS). Nothing else: the dashboard's 8090 and Postgres' 5432 stay on loopback, so
# they need no rule. Note: ports published by Docker bypass ufw, which is why docker-compose.yml publishes
# Postgres on 127.0.0.1 only.
set -euo pipefail

usage() {
    cat <<USAGE
Usage: $0 --admin-ip IP[/CIDR] [--ssh-port N] [--lockdown] [--apply]
  --admin-ip    your home/office (or VPN) address; SSH is allowed from it only (required)
  --ssh-port    SSH port (default 22)
  --lockdown    guide §7.3: also restrict 80/443 to the admin IP (under attack)
  --apply       run the commands (default: print them only)
USAGE
}

admin_ip=""
ssh_port=22
lockdown=0
apply=0
while [ $# -gt 0 ]; do
    case "$1" in
        --admin-ip) admin_ip="${2:-}"; shift 2 ;;
        --ssh-port) ssh_port="${2:-}"; shift 2 ;;
        --lockdown) lockdown=1; shift ;;
        --apply) apply=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "ufw.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$admin_ip" ]; then
    echo "ufw.sh: --admin-ip is required (SSH must be limited to your own address, guide §2.1)" >&2
    usage >&2
    exit 2
fi
# IPv4 with optional /0-32, or an IPv6 address with optional /0-128. Anything else is refused rather than passed
# to ufw, and 0.0.0.0/0 or ::/0 would open SSH to the world, which is exactly what the rule forbids.
ipv4='^([0-9]{1,3}\.){3}[0-9]{1,3}(/([0-9]|[12][0-9]|3[0-2]))?$'
ipv6='^[0-9a-fA-F:]+(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?$'
if ! [[ "$admin_ip" =~ $ipv4 || ( "$admin_ip" == *:* && "$admin_ip" =~ $ipv6 ) ]]; then
    echo "ufw.sh: '$admin_ip' is not an IPv4/IPv6 address or CIDR" >&2
    exit 2
fi
if [[ "$admin_ip" =~ ^0\.0\.0\.0(/0)?$ || "$admin_ip" =~ ^::(/0)?$ || "$admin_ip" =~ /0$ ]]; then
    echo "ufw.sh: '$admin_ip' means everyone; SSH must be restricted to your own address" >&2
    exit 2
fi
if ! [[ "$ssh_port" =~ ^[0-9]+$ ]] || [ "$ssh_port" -lt 1 ] || [ "$ssh_port" -gt 65535 ]; then
    echo "ufw.sh: --ssh-port must be 1-65535" >&2
    exit 2
fi

# Prints each command shell-quoted (so a dry run can be pasted as is), and runs it with --apply.
run() {
    local line
    line="$(printf '%q ' "$@")"
    if [ "$apply" -eq 1 ]; then
        echo "+ ${line% }"
        "$@"
    else
        echo "${line% }"
    fi
}

if [ "$apply" -eq 1 ]; then
    command -v ufw >/dev/null || { echo "ufw.sh: ufw is not installed (apt-get install ufw)" >&2; exit 1; }
    [ "$(id -u)" -eq 0 ] || { echo "ufw.sh: --apply needs root (sudo)" >&2; exit 1; }
    # Warn before a lockout: the SSH session running this script should come from the admin address.
    if [ -n "${SSH_CLIENT:-}" ]; then
        client="${SSH_CLIENT%% *}"
        if [[ "$admin_ip" != */* && "$client" != "$admin_ip" ]]; then
            echo "ufw.sh: WARNING: you are connected from $client but --admin-ip is $admin_ip;" \
                 "after this you can only SSH in from $admin_ip" >&2
        fi
    fi
else
    echo "# dry run: these commands would be executed (pass --apply to run them)"
fi

run ufw default deny incoming
run ufw default allow outgoing
# The SSH rule goes in before `ufw enable`, so enabling never cuts the current session off.
run ufw allow from "$admin_ip" to any port "$ssh_port" proto tcp comment "aegis: ssh from admin only"
if [ "$lockdown" -eq 1 ]; then
    # §7.3: drop the public web rules and allow the dashboard from the admin address only.
    run ufw --force delete allow 80/tcp || true
    run ufw --force delete allow 443/tcp || true
    run ufw allow from "$admin_ip" to any port 80 proto tcp comment "aegis: lockdown http"
    run ufw allow from "$admin_ip" to any port 443 proto tcp comment "aegis: lockdown https"
else
    run ufw allow 80/tcp comment "aegis: http -> https redirect"
    run ufw allow 443/tcp comment "aegis: https dashboard"
fi
# No rule for 5432 (Postgres) or 8090 (the bot): both listen on 127.0.0.1 only and need none (guide §2.1, §3).
run ufw --force enable
run ufw status verbose
