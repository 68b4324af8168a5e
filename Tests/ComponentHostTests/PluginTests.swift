import ComponentKit
import KeyValueComponent
import Logging
import Testing
import XMPPCore

@testable import ComponentHost
@testable import StockPlugins

@Suite("Plugins")
struct PluginTests {
    @Test func registryListsStandardPlugins() {
        #expect(PluginRegistry.stock.plugins.map(\.name) == ["echo", "external", "kv"])
        // The example plugins live in StockPlugins: the host library carries only the built-in `external`.
        #expect(PluginRegistry.standard.plugins.map(\.name) == ["external"])
        #expect(
            PluginRegistry.stock["kv"]?.options.map(\.name) == [
                "max_keys", "read_only", "max_key_bytes", "max_value_bytes", "writers",
            ])
    }

    @Test func duplicateNamesAreRefused() {
        let error = #expect(throws: PluginError.self) {
            try PluginRegistry([EchoPlugin.self, EchoPlugin.self])
        }
        #expect(error?.kind == .duplicatePlugin)
    }

    @Test func validationFillsDefaultsAndChecksTypes() throws {
        let registry = PluginRegistry.stock
        let options = try registry.validate(plugin: "kv", options: ["max_keys": .integer(5)])
        #expect(
            options.values == [
                "max_keys": .integer(5), "read_only": .boolean(false), "max_key_bytes": .integer(256),
                "max_value_bytes": .integer(4096), "writers": .string(""),
            ])

        let unknown = #expect(throws: PluginError.self) {
            try registry.validate(plugin: "kv", options: ["max": .integer(5)])
        }
        #expect(unknown?.kind == .unknownOption)
        #expect(
            unknown?.message
                == "unknown option 'max': plugin 'kv' takes: max_key_bytes, max_keys, max_value_bytes, read_only, writers")

        let wrongType = #expect(throws: PluginError.self) {
            try registry.validate(plugin: "kv", options: ["read_only": .string("yes")])
        }
        #expect(wrongType?.kind == .wrongType)
        #expect(wrongType?.message == "option 'read_only' of plugin 'kv' must be true or false, not a string (\"yes\")")

        let unknownPlugin = #expect(throws: PluginError.self) {
            try registry.validate(plugin: "weather", options: [:])
        }
        #expect(unknownPlugin?.message == "unknown plugin 'weather'; this host has: echo, external, kv")
    }

    @Test func requiredOptionsAndIntegerAsDouble() throws {
        let registry = try PluginRegistry([RequiredOptionPlugin.self])
        let missing = #expect(throws: PluginError.self) {
            try registry.validate(plugin: "needs", options: [:])
        }
        #expect(missing?.kind == .missingOption)
        let options = try registry.validate(plugin: "needs", options: ["ratio": .integer(2)])
        #expect(options.double("ratio") == 2)
        #expect(options["ratio"] == .double(2))
    }

    @Test func commandLineAssignmentsAreTypedByTheDeclarations() throws {
        let registry = PluginRegistry.stock
        let values = try registry.parseAssignments(plugin: "kv", ["max_keys=7", "read_only=TRUE"])
        #expect(values == ["max_keys": .integer(7), "read_only": .boolean(true)])
        #expect(try registry.parseAssignments(plugin: "echo", ["prefix=a=b"]) == ["prefix": .string("a=b")])
        let error = #expect(throws: PluginError.self) {
            try registry.parseAssignments(plugin: "kv", ["max_keys=many"])
        }
        #expect(error?.message == "option 'max_keys' of plugin 'kv' must be an integer, not 'many'")
    }

    @Test func pluginRefusalIsAPluginError() {
        let error = #expect(throws: PluginError.self) {
            try PluginRegistry.stock.makeHandler(
                plugin: "kv", options: PluginOptions(["max_keys": .integer(0), "read_only": .boolean(false)]),
                context: PluginContext(hostname: "kv.example.com", logger: .init(label: "test")))
        }
        #expect(error?.message == "option 'max_keys': must be at least 1, not 0")
    }

    // MARK: Key-value plugin logic

    @Test func keyValueCommands() {
        let store = KeyValueComponent.Store(limits: .init(maxKeys: 2))
        #expect(store.command("get colour") == "(not set)")
        #expect(store.command("set colour dark blue") == "ok")
        #expect(store.command("get colour") == "dark blue")
        #expect(store.command("set size 3") == "ok")
        #expect(store.command("set third x") == "error: the store holds at most 2 keys")
        #expect(store.command("keys") == "colour, size")
        #expect(store.command("del colour") == "deleted")
        #expect(store.command("del colour") == "(not set)")
        #expect(store.command("hello") == "commands: set KEY VALUE, get KEY, del KEY, keys")
        store.limits = .init(maxKeys: 2, readOnly: true)
        #expect(store.command("set a b") == "error: this store is read-only")
    }

    @Test func keyValueQueries() throws {
        let store = KeyValueComponent.Store(limits: .init())
        let ns = KeyValueComponent.namespace
        let set = Element("query", namespace: ns, children: [Element("item", namespace: ns, attributes: ["key": "k"], text: "v")])
        #expect(try store.answer(set, isSet: true) == nil)
        let get = Element("query", namespace: ns, children: [Element("item", namespace: ns, attributes: ["key": "k"])])
        let answer = try #require(try store.answer(get, isSet: false))
        #expect(answer.children("item", namespace: ns).first?.text == "v")
        #expect(answer.children("item", namespace: ns).first?["key"] == "k")

        let missing = Element("query", namespace: ns, children: [Element("item", namespace: ns, attributes: ["key": "nope"])])
        #expect(throws: StanzaError.self) { try store.answer(missing, isSet: false) }
        do {
            _ = try store.answer(missing, isSet: false)
        } catch {
            #expect(error.condition == .itemNotFound)
        }
        do {
            _ = try store.answer(Element("query", namespace: ns), isSet: false)
        } catch {
            #expect(error.condition == .badRequest)
        }
        #expect(KeyValueComponent().discoInfo.features == [ns])
    }

    @Test func keyValueOptionsChangeInPlaceKeepingValues() async throws {
        let component = KeyValueComponent(limits: .init(maxKeys: 10))
        try component.store.set("k", "v")
        try await component.optionsChanged(to: PluginOptions(["max_keys": .integer(1), "read_only": .boolean(true)]))
        #expect(component.store.value("k") == "v")
        #expect(component.store.limits == .init(maxKeys: 1, readOnly: true))
    }
}

/// A plugin with a required option and a number option, for validation tests.
enum RequiredOptionPlugin: ComponentPlugin {
    static let name = "needs"
    static let description = "Needs an option."
    static let options = [PluginOption("ratio", type: .double, help: "A ratio.")]
    static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        ClosureHandler { _, _ in }
    }
}
