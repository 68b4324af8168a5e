#!/usr/bin/env bash
# The benchmark suite, in one command (see Benchmarks/README.md):
#   Benchmarks/run.sh            # full run, echo pinned then unpinned: a few minutes after the build
#   Benchmarks/run.sh --smoke    # seconds: proves everything still runs (unpinned only); figures meaningless
# Extra arguments go to `xmpp-benchmarks all` (e.g. --only reflector,libstrophe,
# --placement pinned|unpinned|both).
# Prints a table and writes Benchmarks/results/latest.json. Never fails on a number.
set -euo pipefail
cd "$(dirname "$0")"

bash setup.sh
swift build -c release --product xmpp-benchmarks
swift build -c release --product component-host
bin="$(swift build -c release --show-bin-path)"
mkdir -p results
# No taskset here: the harness sets its own affinity for each placement (pinned: itself
# on core 0, every component on core 1; unpinned: no affinity anywhere).
exec "$bin/xmpp-benchmarks" all --host "$bin/component-host" --peers .build/peers \
    --json results/latest.json "$@"
