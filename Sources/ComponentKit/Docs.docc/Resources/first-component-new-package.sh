# A new directory with the layout of a Swift package: a library for the component,
# an executable for the host, and tests.
mkdir FirstComponent && cd FirstComponent
mkdir -p Sources/Greeter Sources/greeter-host Tests/GreeterTests prosody scripts

# Where you cloned swift-xmpp-component (Package.swift and the steps below use it).
export SDK=$HOME/src/swift-xmpp-component
