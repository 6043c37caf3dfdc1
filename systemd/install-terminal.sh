#!/bin/sh
# Installs (or updates) a haocha terminal on a Raspberry Pi from the hall's hub, which serves this
# script, the wheels and the unit at /fleet/ (docs/deploy.md). On the Pi, as root:
#
#   curl -fsS http://HUB:8080/fleet/install-terminal.sh | sh -s -- /path/to/T07
#
# /path/to/T07 is the device's folder that `haocha device add` wrote on the hub (terminal.toml,
# ca.crt, ...), copied by the technician: secrets never travel over /fleet/. Over HTTPS add
# `--cacert /path/to/T07/ca.crt` to curl. The journal (ratings not yet sent) is never touched.
#
#   --root DIR     install below DIR instead of / (no users, no systemctl: for tests)
#   --no-start     install and enable the service, do not start it
set -eu

HUB="@HUB_URL@"
ROOT=""
START=yes
FOLDER=""
USER_NAME=haocha
OPT=/opt/haocha
STATE=/var/lib/haocha-terminal
UNIT=haocha-terminal.service

die() { echo "install-terminal: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="$2"; shift 2 ;;
        --no-start) START=no; shift ;;
        --hub) HUB="$2"; shift 2 ;;
        -*) die "unknown option $1 (see the head of this script)" ;;
        *) FOLDER="$1"; shift ;;
    esac
done

[ -n "$FOLDER" ] || die "name the device's folder copied from the hub (it holds terminal.toml)"
[ -f "$FOLDER/terminal.toml" ] || die "$FOLDER/terminal.toml is missing: copy the folder \`haocha device add\` wrote"
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || die "run as root (sudo sh -s -- $FOLDER)"
command -v python3 >/dev/null || die "python3 is missing: apt install python3 python3-venv"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed (Raspberry Pi OS Bookworm has 3.11)"
python3 -c 'import ensurepip' 2>/dev/null || die "python3-venv is missing: apt install python3-venv"

fetch() {  # URL FILE
    if command -v curl >/dev/null; then
        curl -fsS ${CACERT:+--cacert "$CACERT"} -o "$2" "$1"
    else
        python3 - "$1" "$2" "${CACERT:-}" <<'EOF'
import ssl, sys, urllib.request
url, out, ca = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca or None)
with urllib.request.urlopen(url, context=ctx, timeout=60) as r, open(out, "wb") as f:
    f.write(r.read())
EOF
    fi
}

CACERT=""
case "$HUB" in https://*) [ -f "$FOLDER/ca.crt" ] && CACERT="$FOLDER/ca.crt" ;; esac

if [ -z "$ROOT" ]; then
    # gpio for the keys and lights (Raspberry Pi OS has it), dialout for Modbus and serial panels.
    getent group gpio >/dev/null || groupadd --system gpio
    getent group dialout >/dev/null || groupadd --system dialout
    id "$USER_NAME" >/dev/null 2>&1 \
        || useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
    usermod -a -G gpio,dialout "$USER_NAME"
fi

# Two slots (SPEC section 13): slots/a and slots/b, slots/current -> the one that runs, and
# current -> slots/current. Updates from the hub install into the other slot and switch; this
# script (re)installs into the running one. The launcher, outside the slots, picks the slot.
SLOTS="$ROOT$OPT/slots"
mkdir -p "$SLOTS"
[ -L "$SLOTS/current" ] || ln -s a "$SLOTS/current"
[ -L "$ROOT$OPT/current" ] || ln -s slots/current "$ROOT$OPT/current"
VENV="$SLOTS/$(readlink "$SLOTS/current")"
echo "install-terminal: haocha[pi] from $HUB/fleet/ into $VENV"
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-index --upgrade \
    --find-links "$HUB/fleet/" ${CACERT:+--cert "$CACERT"} 'haocha[pi]' \
    || die "pip could not install haocha[pi] from $HUB/fleet/ (is the wheelhouse made for this Pi's CPU and Python? docs/deploy.md)"

# The device's config and TLS files only: a journal in the folder (a simulator ran there) must
# never replace the terminal's own, which holds the ratings not yet sent.
mkdir -p "$ROOT$STATE"
chmod 0700 "$ROOT$STATE"
for f in "$FOLDER"/terminal.toml "$FOLDER"/release.pub "$FOLDER"/*.crt "$FOLDER"/*.key "$FOLDER"/*.pem; do
    [ -f "$f" ] || continue
    cp "$f" "$ROOT$STATE/"
    chmod 0600 "$ROOT$STATE/$(basename "$f")"
done
[ -n "$ROOT" ] || chown -R "$USER_NAME:$USER_NAME" "$STATE"

# The launcher is the installed release's terminal/slots.py, kept outside the slots (root's, like
# /opt/haocha itself); the terminal may write only below slots/ (the unit's ReadWritePaths).
"$VENV/bin/python" -c 'import shutil, sys, terminal.slots as s; shutil.copyfile(s.__file__, sys.argv[1])' \
    "$ROOT$OPT/launcher.py" || die "the installed haocha has no terminal/slots.py"
[ -n "$ROOT" ] || chown -R "$USER_NAME:$USER_NAME" "$SLOTS"

mkdir -p "$ROOT/etc/systemd/system"
fetch "$HUB/fleet/$UNIT" "$ROOT/etc/systemd/system/$UNIT" || die "cannot fetch $HUB/fleet/$UNIT"
"$VENV/bin/haocha" terminal check --config "$ROOT$STATE/terminal.toml" \
    || die "the device's terminal.toml is refused (above); nothing started"

if [ -z "$ROOT" ]; then
    systemctl daemon-reload
    if [ "$START" = yes ]; then
        systemctl enable --now "$UNIT"
        systemctl restart "$UNIT"  # an update: the new version runs
    else
        systemctl enable "$UNIT"
    fi
fi
echo "install-terminal: done; logs: journalctl -u $UNIT -f"
