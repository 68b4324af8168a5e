#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the XML stream decoder, the
# negotiation state machines, JID parsing, the SASL client (real Cyrus), the host's TOML
# loader and admin-socket lines, for a bounded time each. See Fuzz/Package.swift.
#
#   scripts/fuzz.sh [seconds-per-target] [target…]
#
# Default: 60 s for each of FuzzXMLStream, FuzzNegotiation, FuzzJID, FuzzSASLClient,
# FuzzHostConfiguration and FuzzAdminLine (so about 6 minutes of fuzzing plus the build). Each target starts from a copy of its committed seed corpus,
# Tests/FuzzCorpus/<target>/, so a run never grows the repository; new inputs stay in the
# work directory ($FUZZ_WORKDIR, default a fresh mktemp directory). On a crash, leak or
# timeout the script prints the reproducer path and exits non-zero; reproduce with
#
#   Fuzz/.build/release/<target> <reproducer>
#
# and minimise with `-minimize_crash=1 -runs=100000 <reproducer>`.
#
# The build is release (-O) with the fuzzer and address sanitizers: the optimiser makes
# each execution several times cheaper than a debug build, and on 2 cores the cold build
# of the fuzz package (XMPPCore, XMPPStream and their NIO dependencies) stays near a minute
# and a half; incremental rebuilds take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(FuzzXMLStream FuzzNegotiation FuzzJID FuzzSASLClient FuzzHostConfiguration FuzzAdminLine)
fi
workdir=${FUZZ_WORKDIR:-$(mktemp -d -t xmpp-fuzz.XXXXXX)}
mkdir -p "$workdir"

start=$(date +%s)
swift build -c release --package-path Fuzz -Xswiftc -sanitize=fuzzer,address
bin=$(swift build -c release --package-path Fuzz --show-bin-path -Xswiftc -sanitize=fuzzer,address)
echo "fuzz: build took $(( $(date +%s) - start ))s"

# The Swift runtime's backtracer must not race ASan's reports; libFuzzer prints its own.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}

declare -A summary
status=0
for target in "${targets[@]}"; do
    corpus="$workdir/$target/corpus"
    artifacts="$workdir/$target/artifacts/"
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp Tests/FuzzCorpus/"$target"/* "$corpus"/
    log="$workdir/$target/log"
    extra=()
    asan=$ASAN_OPTIONS
    if [ "$target" = FuzzHostConfiguration ]; then
        # TOMLKit 0.6 leaks in its own code: TOMLTable(string:) never frees the
        # CTOMLParseError it allocates, and TOMLValueConvertible.string never frees the
        # strdup'd value. A dependency's leaks, not ours (the host parses its file once per
        # start or reload); leak checks are off for this target only, ASan's other checks stay.
        extra=(-detect_leaks=0)
        asan=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0}
    fi
    echo "fuzz: $target for ${seconds}s (corpus $corpus, log $log)"
    set +e
    ASAN_OPTIONS=$asan "$bin/$target" "$corpus" "${extra[@]}" \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    # The last status line: "#N DONE cov: C ft: F corp: …" (or the last pulse before a crash).
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    summary[$target]="runs ${runs:-?}, ${execs:-?} exec/s, $(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$last" || echo 'cov: ? ft: ?')"
    if [ $rc -ne 0 ]; then
        status=1
        tail -n 60 "$log"
        for reproducer in "$artifacts"*; do
            [ -e "$reproducer" ] && echo "fuzz: $target FAILED (exit $rc); reproducer: $reproducer"
        done
        summary[$target]+="  FAILED (exit $rc)"
    fi
done

echo "fuzz: summary (${seconds}s per target)"
for target in "${targets[@]}"; do
    echo "  $target: ${summary[$target]}"
done
echo "fuzz: finished in $(( $(date +%s) - start ))s"
exit $status
