#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need, pinned:
#   - the Python SDK (braintrust 0.48.1, autoevals 0.4.1), pyarrow 26.0.1 and duckdb 2.0.1 (to read
#     Parquet exports) into compat/.venv from compat/requirements.txt
#   - the JS SDK (braintrust 3.35.0) into compat/js/node_modules from compat/js/package-lock.json
#   - moto 5.2.5 (its KMS server) into compat/.moto-venv from compat/moto-requirements.txt
#   - schemathesis 4.32.5 into compat/.schemathesis-venv from compat/schemathesis-requirements.txt
#   - promtool, from Debian's prometheus 2.42.0+ds-5+deb12u1, to check the /metrics exposition
#   - Debian's chromium and chromium-driver 156.0.8078.129-1~deb12u1 (or the newest 156 build once
#     the archive has superseded it), driven by Python selenium
#     4.51.0 (compat/requirements.txt), and npm oidc-provider 9.13.3 (compat/js) as the
#     OpenID provider that the sign-in tests use
#   - SAML: pysaml2 7.5.5 (compat/requirements.txt) as the identity provider, signing with
#     Debian's xmlsec1 1.2.37-2; and what the `saml` feature builds with: libxmlsec1-dev
#     1.2.37-2, libclang-dev and clang 1:14.0-55.7~deb12u1, libxml2-dev and pkg-config
# The tests run with the `saml` feature on (it is off in a default build).
# Store tests run on PostgreSQL too when TEST_DATABASE_URL is set (postgres://.../db); the
# PostgreSQL backup test uses that server's own client tools (pg_dump, pg_restore) from the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x compat/.venv/bin/python ]; then
  python3 -m venv compat/.venv
fi
compat/.venv/bin/pip install --quiet --disable-pip-version-check -r compat/requirements.txt
# A KMS-compatible server (moto) for the AWS KMS provider's tests, in a venv of its own.
if [ ! -x compat/.moto-venv/bin/python ]; then
  python3 -m venv compat/.moto-venv
fi
compat/.moto-venv/bin/pip install --quiet --disable-pip-version-check -r compat/moto-requirements.txt
# Schemathesis, which fuzzes the API from its OpenAPI description.
if [ ! -x compat/.schemathesis-venv/bin/python ]; then
  python3 -m venv compat/.schemathesis-venv
fi
compat/.schemathesis-venv/bin/pip install --quiet --disable-pip-version-check -r compat/schemathesis-requirements.txt
(cd compat/js && BT_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
# Debian packages, pinned: promtool (prometheus) and headless Chromium with its WebDriver.
debs=()
command -v promtool >/dev/null 2>&1 || debs+=("prometheus=2.42.0+ds-5+deb12u1")
# Debian's security archive keeps only the newest build of a release's Chromium, so when the
# pinned build has been superseded, the newest build of the same major version is taken instead
# (both packages at that one version), and the substitution is printed.
chromium_version="156.0.8078.129-1~deb12u1"
chromium_builds() { apt-cache madison chromium 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}'; }
if [ "$(dpkg-query -W -f='${Version}' chromium 2>/dev/null)" != "$chromium_version" ] &&
  ! chromium_builds | grep -qxF "$chromium_version"; then
  apt-get update -qq >/dev/null 2>&1 || true
  if ! chromium_builds | grep -qxF "$chromium_version"; then
    newest=$(chromium_builds | grep -E "^${chromium_version%%.*}\\." | sort -V | tail -1 || true)
    if [ -n "$newest" ]; then
      echo "chromium $chromium_version is no longer in the archive; using $newest" >&2
      chromium_version=$newest
    fi
  fi
fi
[ "$(dpkg-query -W -f='${Version}' chromium 2>/dev/null)" = "$chromium_version" ] &&
  [ "$(dpkg-query -W -f='${Version}' chromium-driver 2>/dev/null)" = "$chromium_version" ] ||
  debs+=("chromium=$chromium_version" "chromium-driver=$chromium_version")
for pinned in xmlsec1=1.2.37-2 libxmlsec1-dev=1.2.37-2 libclang-dev=1:14.0-55.7~deb12u1 \
  clang=1:14.0-55.7~deb12u1; do
  [ "$(dpkg-query -W -f='${Version}' "${pinned%%=*}" 2>/dev/null)" = "${pinned#*=}" ] || debs+=("$pinned")
done
for any in libxml2-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$any" 2>/dev/null | grep -q "ok installed" || debs+=("$any")
done
if [ "${#debs[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null; }
fi

# The SAML code is linted here too: .ci/run's clippy builds without the feature.
cargo clippy --workspace --all-targets --locked --features holdfast/saml -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --features holdfast/saml 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
