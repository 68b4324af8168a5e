// swift-tools-version:6.1
//
// libFuzzer targets for swift-xmpp-component, kept out of the root package (as
// swift-protobuf does with FuzzTesting) so its users and its CI build never see them.
// Build and run with scripts/fuzz.sh, or by hand:
//
//   swift build -c release --package-path Fuzz -Xswiftc -sanitize=fuzzer,address
//   Fuzz/.build/release/FuzzXMLStream -max_len=4096 Tests/FuzzCorpus/FuzzXMLStream
//
// Targets (each an executable exporting LLVMFuzzerTestOneInput):
//   FuzzXMLStream    bytes -> XMLStreamParser (chunked, restarts, small limits),
//                    with a serialise/re-parse round-trip oracle and a
//                    chunking-independence oracle
//   FuzzNegotiation  bytes -> XMLStreamParser -> both client negotiation machines,
//                    with invariants on the actions they produce
//   FuzzJID          UTF-8 -> JID(_:), normalisation idempotent
//   FuzzSASLClient   server elements -> SASLClient (real Cyrus), no password in errors
//   FuzzHostConfiguration  UTF-8 -> HostConfiguration.parse (TOMLKit + validation)
//   FuzzAdminLine    bytes -> an admin-socket JSON line, plugin options validated

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "xmpp-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-xmpp-component", path: "..")
    ],
    targets: [
        // libFuzzer's LLVMFuzzerRunDriver, called from each target's main.swift.
        .target(name: "CFuzzDriver"),
        // The properties each target checks, one input at a time. The root package builds
        // the same directory as a target of its own, so that `swift test` replays every
        // committed corpus input through them (Tests/XMPPStreamTests/FuzzCorpusReplayTests.swift).
        .target(
            name: "FuzzOracles",
            dependencies: [
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "XMPPStream", package: "swift-xmpp-component"),
                .product(name: "XMPPSASL", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        // The host's targets' properties (TOML loader, admin-socket lines), replayed the
        // same way by Tests/ComponentHostTests/HostFuzzCorpusReplayTests.swift.
        .target(
            name: "HostFuzzOracles",
            dependencies: [
                "FuzzOracles",
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "StockPlugins", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FuzzSupport",
            dependencies: ["CFuzzDriver", "FuzzOracles"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzXMLStream",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "XMPPStream", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzNegotiation",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "XMPPStream", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzJID",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzSASLClient",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "XMPPSASL", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzHostConfiguration",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                "HostFuzzOracles",
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "StockPlugins", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzAdminLine",
            dependencies: [
                "FuzzOracles",
                "FuzzSupport",
                "HostFuzzOracles",
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "StockPlugins", package: "swift-xmpp-component"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
