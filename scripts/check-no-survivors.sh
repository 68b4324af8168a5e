#!/usr/bin/env bash
# Fails (and kills them) when processes started by a test run are still alive: every
# process XMPPTestSupport's TestProcess starts carries XMPP_TEST_STARTED_BY=<run marker> in
# its environment, inherited by its descendants.
#   scripts/check-no-survivors.sh MARKER
set -euo pipefail
marker=${1:?usage: check-no-survivors.sh MARKER}
survivors=()
for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    if { tr '\0' '\n' < "$environ"; } 2>/dev/null | grep -qx "XMPP_TEST_STARTED_BY=$marker"; then
        survivors+=("$pid")
    fi
done
if [ "${#survivors[@]}" -gt 0 ]; then
    echo "check-no-survivors: processes of test run $marker outlived it:" >&2
    for pid in "${survivors[@]}"; do
        echo "  $pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)" >&2
        kill -KILL "$pid" 2>/dev/null || true
    done
    exit 1
fi
echo "check-no-survivors: no process of test run $marker is left" >&2
