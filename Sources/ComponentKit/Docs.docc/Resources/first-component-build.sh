swift build
# …
# Build complete!
swift run greeter-host
# usage: greeter-host host.toml
