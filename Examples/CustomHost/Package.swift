// swift-tools-version:6.1
//
// A host binary with your own plugin: depends on the ComponentHost library product.
// In your project, replace the path dependency with the repository URL:
//   .package(url: "https://github.com/OWNER/swift-xmpp-component.git", from: "0.1.0")
// Build: swift build --package-path Examples/CustomHost

import PackageDescription

let package = Package(
    name: "CustomHost",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-xmpp-component", path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "CustomHost",
            dependencies: [
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "StockPlugins", package: "swift-xmpp-component"),
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ]
)
