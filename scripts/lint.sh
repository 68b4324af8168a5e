#!/usr/bin/env bash
# Checks the Swift sources against the checked-in .swift-format (swift format, in the
# toolchain since Swift 6). Fails on any finding. Fix the layout with:
#   swift format -i -r Sources Tests Examples Benchmarks Fuzz
# (rules that -i cannot fix, such as a missing doc comment on a public declaration, need a
# hand; `// swift-format-ignore: RuleName` before a declaration exempts it).
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Sources Tests Examples Benchmarks Fuzz)
# --parallel: one file per core; the .build directories of the sub-packages hold no
# tracked sources, so lint only what git tracks (and new files not yet added).
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- "${paths[@]}" | grep '\.swift$' || true)
if [ "${#files[@]}" -eq 0 ]; then
  echo "lint: no Swift files found" >&2
  exit 1
fi
swift format lint --strict --parallel --configuration .swift-format "${files[@]}"
echo "lint: ${#files[@]} files clean"
