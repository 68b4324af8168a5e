#!/usr/bin/env bash
# Sets up the machine and passes every test (the README's test command):
#   1. the Swift test suite (unit tests, real TLS/SASL on loopback, the reference server,
#      real Prosody and ejabberd started by the tests, the component-host binary);
#   2. the Prosody XEP-0225 module's wire-level checks against a real Prosody;
#   3. a bounded libFuzzer run over the decoder, the negotiation machines, JIDs, the SASL
#      client, the TOML loader and admin-socket lines (FUZZ_SECONDS per target, 20 by
#      default, six targets: CI's fuzz time is set here and only here; 0 skips it).
#      `swift test` itself replays every committed corpus input;
#   4. the example packages: Examples/OutOfProcessComponent (a Swift component the stock
#      host runs through `command`) is built before the suite, which runs it
#      (OUT_OF_PROCESS_COMPONENT); Examples/FirstComponent (the DocC tutorial's project) is
#      built and its tests pass; Examples/CustomHost (the README's "write your own host")
#      builds. They share one build folder (.build-examples), so the dependencies are
#      compiled once for the three;
#   5. the documentation (DocC, warnings are errors: scripts/docs.sh) and the layout
#      (swift format lint with the checked-in .swift-format: scripts/lint.sh);
#   6. the benchmark suite in smoke mode (proves it still runs; never judges a number, but
#      fails when a selected target did not run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test.sh: swift format lint" >&2
scripts/lint.sh

swift build --build-tests
# The out-of-process Swift example is built first: a test runs it under the stock host.
echo "test.sh: Examples/OutOfProcessComponent (run by the stock component-host) builds" >&2
examples=(--scratch-path .build-examples)
swift build --package-path Examples/OutOfProcessComponent "${examples[@]}"
OUT_OF_PROCESS_COMPONENT="$(swift build --package-path Examples/OutOfProcessComponent "${examples[@]}" --show-bin-path)/OutOfProcessComponent"
export OUT_OF_PROCESS_COMPONENT
# Every server a test starts carries XMPP_TEST_STARTED_BY=<this run> (XMPPTestSupport's
# TestProcess); none may outlive the suite, however the suite ended.
export XMPP_TEST_RUN="test-sh-$$-$(date +%s)"
status=0
swift test --skip-build "$@" || status=$?
scripts/check-no-survivors.sh "$XMPP_TEST_RUN" || status=1
[ "$status" = 0 ] || exit "$status"

echo "test.sh: Prosody XEP-0225 module, wire-level checks" >&2
python3 ServerModules/prosody/dev/wire_test.py

fuzz_seconds=${FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
    echo "test.sh: fuzzing, ${fuzz_seconds}s per target" >&2
    scripts/fuzz.sh "$fuzz_seconds"
fi

echo "test.sh: Examples/FirstComponent (the tutorial's project) builds and passes its tests" >&2
swift build --build-tests --package-path Examples/FirstComponent "${examples[@]}"
swift test --skip-build --package-path Examples/FirstComponent "${examples[@]}"

echo "test.sh: Examples/CustomHost (a host binary of one's own) builds" >&2
swift build --package-path Examples/CustomHost "${examples[@]}"

echo "test.sh: documentation (DocC, warnings as errors)" >&2
scripts/docs.sh

echo "test.sh: benchmark suite (smoke)" >&2
Benchmarks/run.sh --smoke
