#!/usr/bin/env bash
# Sets up the machine and runs the main job: component-host with the echo and kv plugins
# against the embedded reference server (STARTTLS + SCRAM via Cyrus SASL), a third
# hostname bound at runtime, real stanzas printed as they flow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --product component-host
exec .build/debug/component-host demo "$@"
