/// Runs `body`, then `cleanup`, on every path: when `body` returns and when it throws
/// (a failed `#require`, a timeout). Swift has no `async defer`; this is it, awaited, so that
/// a server or a task is really stopped before the test ends.
///
/// ```swift
/// let server = try await ReferenceServer.start(configuration: configuration)
/// try await withCleanup {
///     try #require(…)
/// } cleanup: {
///     await server.stop()
/// }
/// ```
/// - Parameters:
///   - body: The test's work.
///   - cleanup: What stops what the test started; runs exactly once.
/// - Returns: What `body` returned.
/// - Throws: What `body` threw.
public func withCleanup<Result>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> Result,
    cleanup: () async -> Void
) async throws -> Result {
    let result: Result
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}

/// Runs `body` against a deadline: a stream iteration or a wait that could block forever
/// fails with ``TestSupportError`` at the deadline instead (`body` is cancelled and must
/// honour cancellation, as NIO's async channels and `AsyncStream` do).
/// - Parameters:
///   - timeout: The deadline.
///   - what: What is awaited, for the error.
///   - body: The wait.
/// - Returns: What `body` returned.
/// - Throws: ``TestSupportError`` at the deadline, or what `body` threw.
public func withDeadline<Result: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestSupportError("\(what): nothing within \(timeout)")
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() else { throw CancellationError() }
        return result
    }
}
