// swift-tools-version:6.1
//
// The "Your first component" tutorial's project (ComponentKit documentation, tutorial
// "Your first component"): a greeter component written with StanzaRouter, its tests with
// ComponentKitTesting, and a host binary that runs it beside component-host's own plugins.
//
// In your own project, replace the path dependency with the repository's URL:
//   .package(url: "https://github.com/OWNER/swift-xmpp-component.git", from: "0.1.0")
//
//   swift build --package-path Examples/FirstComponent
//   swift test --package-path Examples/FirstComponent

import PackageDescription

let package = Package(
    name: "FirstComponent",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-xmpp-component", path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        // The component: a handler and the plugin that makes it.
        .target(
            name: "Greeter",
            dependencies: [
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
            ]
        ),
        // A host process that runs the greeter plugin.
        .executableTarget(
            name: "greeter-host",
            dependencies: [
                "Greeter",
                .product(name: "ComponentHost", package: "swift-xmpp-component"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Tests with no server and no socket.
        .testTarget(
            name: "GreeterTests",
            dependencies: [
                "Greeter",
                .product(name: "ComponentKit", package: "swift-xmpp-component"),
                .product(name: "ComponentKitTesting", package: "swift-xmpp-component"),
                .product(name: "XMPPCore", package: "swift-xmpp-component"),
            ]
        ),
    ]
)
