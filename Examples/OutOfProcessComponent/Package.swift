// swift-tools-version:6.1
//
// A Swift component in its own process, run by the stock `component-host` through the
// built-in `external` plugin (`command = [".build/debug/OutOfProcessComponent"]`). It uses
// ComponentKit's ComponentConnection with XEP-0114 to the host's local listener.
// In your project, replace the path dependency with the repository URL:
//   .package(url: "https://github.com/OWNER/swift-xmpp-component.git", from: "0.1.0")
// Build: swift build --package-path Examples/OutOfProcessComponent

import PackageDescription

let package = Package(
    name: "OutOfProcessComponent",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-xmpp-component", path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .executableTarget(
            name: "OutOfProcessComponent",
            dependencies: [
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        )
    ]
)
