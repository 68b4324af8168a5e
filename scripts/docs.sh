#!/usr/bin/env bash
# Builds the DocC documentation of the libraries, their articles and the "Your first
# component" tutorial, and fails on any DocC warning (a broken ``Symbol`` or <doc:…> link,
# a missing tutorial resource, a malformed directive).
#
#   scripts/docs.sh                 # check, and leave the archives in .build/plugins/Swift-DocC/outputs
#   DOCS_OUTPUT=/tmp/docs scripts/docs.sh   # write the combined archive there instead
#
# The modules are built together (swift-docc-plugin's combined documentation) so that a
# page links to a symbol of another module with a leading slash: ``/XMPPCore/StanzaError``.
# The tutorial's final code listings are symbolic links to the files of
# Examples/FirstComponent, which CI builds and tests: they cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."

# Dependencies first; a module is documented when it has sources in this checkout.
modules=(XMPPCore XMPPStream XMPPTLS XMPPSASL ComponentKit ComponentKitTesting ComponentHost)
arguments=()
for module in "${modules[@]}"; do
  if compgen -G "Sources/$module/*.swift" > /dev/null; then
    arguments+=(--target "$module")
  fi
done

output=()
if [ -n "${DOCS_OUTPUT:-}" ]; then
  mkdir -p "$DOCS_OUTPUT"
  output=(--output-path "$DOCS_OUTPUT")
  set -- --allow-writing-to-directory "$DOCS_OUTPUT"
else
  set --
fi

start=$(date +%s)
swift package "$@" generate-documentation --enable-experimental-combined-documentation \
  "${arguments[@]}" "${output[@]}" --warnings-as-errors
echo "docs: $(( ${#arguments[@]} / 2 )) modules documented without warnings in $(( $(date +%s) - start ))s"
