#!/usr/bin/env bash
# Installs the system packages the project builds and tests with (Debian 12).
# Idempotent; run as root or with sudo available. Starts no service: the XMPP servers
# are installed behind a policy-rc.d that forbids starting them, because the
# integration tests (XMPPTestSupport) start their own instances on 127.0.0.1.
set -euo pipefail

packages=(
  # build: system libraries behind CExpat, COpenSSL, CCyrusSASL
  pkg-config libexpat1-dev libssl-dev libsasl2-dev libsasl2-modules
  # tests: openssl CLI (certificates, s_server/s_client peers), saslpasswd2 (sasldb files)
  openssl sasl2-bin
  # tests: independent out-of-process components for the host's `external` plugin
  # (a slixmpp ComponentXMPP and a libstrophe component compiled by the tests; cc)
  python3-slixmpp libstrophe-dev gcc
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -gt 0 ] || [ "${SETUP_UPGRADE:-0}" = 1 ]; then
  echo "setup: installing ${missing[*]:-(upgrade)}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
# Integration-test servers, started only by the tests (ProsodyFixture, EjabberdFixture).
# Installed with their Recommends (lua5.4-unbound, lua5.4-event…), as the tests were
# measured. setpriv (util-linux, essential) runs them as their own users.
servers=(prosody ejabberd)

missing_servers=()
for package in "${servers[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing_servers+=("$package")
  fi
done

if [ "${#missing_servers[@]}" -gt 0 ]; then
  echo "setup: installing ${missing_servers[*]} (system services not started)" >&2
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    # exit 101 = "action forbidden": invoke-rc.d then starts no service during the install.
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    created_policy=1
  fi
  remove_policy() {
    if [ "$created_policy" = 1 ]; then as_root rm -f "$policy"; fi
  }
  trap remove_policy EXIT
  if [ "${#missing[@]}" -eq 0 ] && [ "${SETUP_UPGRADE:-0}" != 1 ]; then
    as_root apt-get update -qq
  fi
  # Another apt may hold the lock (parallel setups): wait for it rather than fail.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o DPkg::Lock::Timeout=300 "${missing_servers[@]}" >/dev/null
  remove_policy
  trap - EXIT
fi

echo "setup: system packages ready" >&2
