// swift-tools-version:6.1
//
// XMPP external components for Swift on Linux: XEP-0225 (STARTTLS on OpenSSL,
// SASL on Cyrus, many hostnames per stream) with a XEP-0114 fallback.
//
// Layers (arrows point down only; see README "Architecture"):
//   ComponentKit -> XMPPStream -> XMPPTLS, XMPPSASL -> XMPPCore
//   CExpat, COpenSSL, CCyrusSASL: system libraries, each imported by one module.

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-xmpp-component",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "XMPPCore", targets: ["XMPPCore"]),
        .library(name: "XMPPStream", targets: ["XMPPStream"]),
        .library(name: "XMPPTLS", targets: ["XMPPTLS"]),
        .library(name: "XMPPSASL", targets: ["XMPPSASL"]),
        .library(name: "ComponentKit", targets: ["ComponentKit"]),
        .library(name: "ComponentKitTesting", targets: ["ComponentKitTesting"]),
        .library(name: "ComponentHost", targets: ["ComponentHost"]),
        .library(name: "StockPlugins", targets: ["StockPlugins"]),
        .executable(name: "component-host", targets: ["component-host"]),
        .library(name: "ReferenceServer", targets: ["ReferenceServer"]),
        .executable(name: "reference-server", targets: ["reference-server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // `swift package generate-documentation` (scripts/docs.sh); a plugin, linked into nothing.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: System libraries (Debian: libexpat1-dev, libssl-dev, libsasl2-dev)
        .systemLibrary(
            name: "CExpat",
            pkgConfig: "expat",
            providers: [.apt(["libexpat1-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CCyrusSASL",
            pkgConfig: "libsasl2",
            providers: [.apt(["libsasl2-dev", "libsasl2-modules"])]
        ),

        // MARK: Libraries
        .target(
            name: "XMPPCore",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "XMPPStream",
            dependencies: [
                "XMPPCore",
                "XMPPTLS",
                "XMPPSASL",
                "CExpat",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "XMPPTLS",
            dependencies: [
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "XMPPSASL",
            dependencies: [
                "XMPPCore",
                "CCyrusSASL",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ComponentKit",
            dependencies: [
                "XMPPCore",
                "XMPPStream",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test support for plugin authors: a TestContext that records what a handler does.
        .target(
            name: "ComponentKitTesting",
            dependencies: [
                "ComponentKit",
                "XMPPCore",
                "XMPPStream",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ReferenceServer",
            dependencies: [
                "XMPPCore",
                "XMPPStream",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "reference-server",
            dependencies: [
                "ReferenceServer",
                "XMPPCore",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "ComponentHost",
            dependencies: [
                "ComponentKit",
                "XMPPCore",
                "XMPPTLS",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),

        // The plugins component-host ships (echo, kv), apart from the ComponentHost library.
        .target(
            name: "StockPlugins",
            dependencies: [
                "ComponentHost",
                "ComponentKit",
                "EchoComponent",
                "KeyValueComponent",
                "XMPPCore",
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executable (thin CLI over ComponentHost)
        .executableTarget(
            name: "component-host",
            dependencies: [
                "ComponentHost",
                "StockPlugins",
                "ComponentKit",
                "ReferenceServer",
                "XMPPCore",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Examples (plugins shipped with component-host)
        .target(
            name: "EchoComponent",
            dependencies: ["ComponentKit", "XMPPCore"],
            path: "Examples/EchoComponent",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KeyValueComponent",
            dependencies: ["ComponentKit", "XMPPCore"],
            path: "Examples/KeyValueComponent",
            swiftSettings: swiftSettings
        ),

        // MARK: Test support (not a product: real servers and a c2s client for integration tests)
        .target(
            name: "XMPPTestSupport",
            dependencies: [
                "XMPPCore",
                "XMPPStream",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/XMPPTestSupport",
            swiftSettings: swiftSettings
        ),

        // The fuzz targets' properties (Fuzz/), built here too so that the corpus replay tests
        // run them on every committed input without libFuzzer.
        .target(
            name: "FuzzOracles",
            dependencies: ["XMPPCore", "XMPPStream", "XMPPSASL"],
            path: "Fuzz/Sources/FuzzOracles",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HostFuzzOracles",
            dependencies: ["ComponentHost", "ComponentKit", "StockPlugins", "FuzzOracles"],
            path: "Fuzz/Sources/HostFuzzOracles",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(
            name: "XMPPCoreTests",
            dependencies: ["XMPPCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPStreamTests",
            dependencies: [
                "XMPPStream",
                "XMPPCore",
                "FuzzOracles",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPTLSTests",
            dependencies: [
                "XMPPTLS",
                "XMPPTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ComponentKitTests",
            dependencies: [
                "ComponentKit",
                "ComponentKitTesting",
                "XMPPCore",
                "XMPPStream",
                "EchoComponent",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The examples' tests: only what a plugin author has (ComponentKitTesting, no @testable).
        .testTarget(
            name: "ExamplesTests",
            dependencies: [
                "ComponentKit",
                "ComponentKitTesting",
                "EchoComponent",
                "KeyValueComponent",
                "XMPPCore",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "ComponentKit",
                "ReferenceServer",
                "XMPPTLS",
                "XMPPSASL",
                "EchoComponent",
                "XMPPCore",
                "XMPPStream",
                "XMPPTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ComponentHostTests",
            dependencies: [
                "ComponentHost",
                "FuzzOracles",
                "HostFuzzOracles",
                "ComponentKit",
                "ReferenceServer",
                "XMPPTLS",
                "XMPPSASL",
                "XMPPCore",
                "KeyValueComponent",
                "StockPlugins",
                "XMPPTestSupport",
                "component-host",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPSASLTests",
            dependencies: ["XMPPSASL", "XMPPCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPTestSupportTests",
            dependencies: [
                "XMPPTestSupport",
                "XMPPCore",
                "XMPPStream",
                "XMPPTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReferenceServerTests",
            dependencies: [
                "ReferenceServer",
                "ComponentKit",
                "XMPPCore",
                "XMPPStream",
                "XMPPTLS",
                "XMPPSASL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
