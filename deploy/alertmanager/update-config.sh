#!/bin/sh
# Regenerates Alertmanager's config from the inventory, checks it, and reloads Alertmanager
# only when the check passes (a bad config never replaces the running one).
set -eu
CONFIG=${UNHINDERED_CONFIG:-/etc/unhindered/collector.yaml}
OUT=${ALERTMANAGER_DIR:-/etc/prometheus/alertmanager}
COLLECTOR=${UNHINDERED_COLLECTOR:-/opt/unhindered/venv/bin/unhindered-collector}
NEW=$(mktemp -d)
trap 'rm -rf "$NEW"' EXIT
"$COLLECTOR" alertmanager-config --out "$NEW" --config "$CONFIG"
# The template path inside the config must be where it will live.
sed -i "s|$NEW/|$OUT/|" "$NEW/alertmanager.yml"
mkdir -p "$OUT"
cp "$NEW/unhindered-email.tmpl" "$OUT/"
amtool check-config "$NEW/alertmanager.yml" >/dev/null || {
    echo "generated config refused by amtool; the running one is kept" >&2; exit 1; }
cp "$NEW/alertmanager.yml" "$OUT/alertmanager.yml"
if [ "${NO_RELOAD:-}" = "" ]; then
    systemctl reload prometheus-alertmanager
fi
