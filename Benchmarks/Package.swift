// swift-tools-version:6.1
//
// Benchmarks for swift-xmpp-component, kept out of the root package so that its
// users never build them. Run in release mode:
//
//   swift run -c release --package-path Benchmarks xmpp-benchmarks decode
//   swift run -c release --package-path Benchmarks xmpp-benchmarks decode --smoke

import PackageDescription

let package = Package(
    name: "xmpp-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "swift-xmpp-component", path: ".."),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // expat itself, for the bare-parser ceiling (the root package's CExpat is not a product).
        .systemLibrary(
            name: "CExpatBenchmark",
            pkgConfig: "expat",
            providers: [.apt(["libexpat1-dev"])]
        ),
        .executableTarget(
            name: "xmpp-benchmarks",
            dependencies: [
                "CExpatBenchmark",
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "XMPPStream", package: "swift-xmpp-component"),
                .product(name: "XMPPTLS", package: "swift-xmpp-component"),
                .product(name: "XMPPSASL", package: "swift-xmpp-component"),
                .product(name: "ReferenceServer", package: "swift-xmpp-component"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
                .enableUpcomingFeature("MemberImportVisibility"),
            ]
        ),
    ]
)
