#!/usr/bin/env bash
# Set-up for the benchmark suite only (not the project's scripts/setup.sh): the peers'
# libraries from Debian, the profilers, and the peers built into .build/peers/.
#   bash Benchmarks/setup.sh
set -euo pipefail
cd "$(dirname "$0")"

packages=(libstrophe-dev libgloox-dev python3-slixmpp g++ libssl-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

mkdir -p .build/peers
cc -O2 -Wall -o .build/peers/reflector Peers/reflector.c -lcrypto
cc -O2 -Wall -o .build/peers/strophe-echo Peers/strophe_echo.c $(pkg-config --cflags --libs libstrophe)
c++ -O2 -Wall -o .build/peers/gloox-echo Peers/gloox_echo.cpp $(pkg-config --cflags --libs gloox)
cp Peers/slixmpp_echo.py .build/peers/slixmpp_echo.py
echo "setup: peers built in Benchmarks/.build/peers"
