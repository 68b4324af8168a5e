#!/usr/bin/env bash
# The benchmark suite, in one command (see Benchmarks/README.md):
#   Benchmarks/run.sh            # full run: ~5 minutes after the build
#   Benchmarks/run.sh --smoke    # seconds: proves everything still runs; figures meaningless
# Extra arguments go to `xmpp-benchmarks all` (e.g. --only reflector,libstrophe).
# Prints a table and writes Benchmarks/results/latest.json. Never fails on a number; exits
# non-zero when any selected target did not run (a host that never binds, a peer that crashes).
set -euo pipefail
cd "$(dirname "$0")"

bash setup.sh
swift build -c release --product xmpp-benchmarks
swift build -c release --product component-host
bin="$(swift build -c release --show-bin-path)"
mkdir -p results
# No taskset here: the echo runs go once pinned (the harness sets itself on core 0, every
# component on core 1) and once unpinned (no affinity anywhere, as users run it), in this
# one invocation; --placement pinned|unpinned|both chooses (default both, unpinned with --smoke).
exec "$bin/xmpp-benchmarks" all --host "$bin/component-host" --peers .build/peers \
    --json results/latest.json "$@"
