#!/bin/sh
# Install the real servers the posture tests start on loopback (tests/servers/): Knot (authoritative,
# signs the test zones), Unbound (validating resolver), nginx (MTA-STS policy hosts), MIT Kerberos
# (a KDC for the PSRP endpoint's Kerberos login; libkrb5-dev and gcc build the `gssapi`/`krb5`
# wheels of `pip install -e '.[dev]'`), faketime (a KDC whose clock is off, for the skew message);
# and Chromium, the real browser the HTML report tests open the report in (tests/browser.py).
# Idempotent: installs only what is missing. Needs root (or sudo) on Debian/Ubuntu.
set -eu

PACKAGES="knot unbound nginx-light krb5-kdc krb5-admin-server krb5-user libkrb5-dev gcc faketime chromium"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
# nginx from another package (nginx, nginx-core, nginx-full) is as good as nginx-light.
case "$missing" in
    *nginx-light*)
        if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
            missing=$(echo "$missing" | sed 's/ nginx-light//')
        fi
        ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)

# Kerberos for the PSRP tests: pyspnego's GSSAPI/krb5 bindings are built against libkrb5-dev,
# so they are installed here, after apt, into the active environment (the `kerberos` extra).
python_kerberos() {
    if command -v python >/dev/null 2>&1 && ! python -c 'import gssapi, krb5' 2>/dev/null; then
        echo "installing the Python Kerberos bindings: pip install -e '.[kerberos]'"
        python -m pip install --quiet -e "$ROOT[kerberos]"
    fi
}

if [ -z "$missing" ]; then
    echo "test servers already installed: $PACKAGES"
    python_kerberos
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "installing:$missing"
$SUDO apt-get update -qq
# The tests start their own instances; keep the packages' system services from starting on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
python_kerberos
