#!/usr/bin/env bash
# Installs the system packages the project builds and tests with (Debian 12).
# Idempotent; run as root or with sudo available. Starts no service.
set -euo pipefail

packages=(
  # build: system libraries behind CExpat, COpenSSL, CCyrusSASL
  pkg-config libexpat1-dev libssl-dev libsasl2-dev libsasl2-modules
  # tests: openssl CLI (certificates, s_server/s_client peers), saslpasswd2 (sasldb files)
  openssl sasl2-bin
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
echo "setup: system packages ready" >&2
