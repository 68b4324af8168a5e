#!/usr/bin/env bash
# Sets up the machine and passes every test (the README's test command):
#   1. the Swift test suite (unit tests, real TLS/SASL on loopback, the reference server,
#      real Prosody and ejabberd started by the tests, the component-host binary);
#   2. the Prosody XEP-0225 module's wire-level checks against a real Prosody;
#   3. a bounded libFuzzer run over the decoder, the negotiation machines, JIDs, the SASL
#      client, the TOML loader and admin-socket lines (FUZZ_SECONDS per target, 20 by
#      default, six targets; 0 skips it);
#   4. the benchmark suite in smoke mode (proves it still runs; never judges a number).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

swift build --build-tests
swift test --skip-build "$@"

echo "test.sh: Prosody XEP-0225 module, wire-level checks" >&2
python3 ServerModules/prosody/dev/wire_test.py

fuzz_seconds=${FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
    echo "test.sh: fuzzing, ${fuzz_seconds}s per target" >&2
    scripts/fuzz.sh "$fuzz_seconds"
fi

echo "test.sh: benchmark suite (smoke)" >&2
Benchmarks/run.sh --smoke
