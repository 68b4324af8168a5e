import Testing
import XMPPCore

@testable import ComponentKit

/// The connection's state machine alone: no sockets, no event loop, no time.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    let a = HostnameKey("a.example")!
    let b = HostnameKey("b.example")!

    /// A running machine with a stream up and `a` registered.
    func running(_ keys: [HostnameKey] = [HostnameKey("a.example")!], tls: Bool = true) -> ConnectionStateMachine {
        var machine = ConnectionStateMachine(legacy: false)
        for key in keys {
            let check1 = machine.add(key, requested: key.description) == .added(bindNow: false, startLegacyStream: false)
            #expect(check1)
        }
        let check2 = (try? machine.start()) == keys.sorted()
        #expect(check2)
        let check3 = machine.streamOpened(hasTLS: tls) == keys.sorted()
        #expect(check3)
        return machine
    }

    @Test func bindThenRouteThenSend() {
        var machine = self.running()
        // Not bound yet: nothing is routed to it, what it sends waits.
        #expect(machine.route(self.a) == .notServed)
        #expect(machine.send(from: self.a) == .queue(self.a))
        let check4 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check4)
        let check5 = !machine.bindStarted(self.a, requestID: "b2")
        #expect(check5, "a second bind while one is in flight")
        // The server routes to a hostname whose bind is in flight: delivered, not bounced.
        #expect(machine.route(self.a) == .deliver(self.a, mayAnswer: true))
        #expect(machine.send(from: self.a) == .queue(self.a))
        let check6 =
            machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example") == .bound(hostname: "a.example", rebind: false)
        #expect(check6)
        #expect(machine.route(HostnameKey(address: "user@A.example/r")!) == .deliver(self.a, mayAnswer: true))
        #expect(machine.send(from: HostnameKey(address: "bot@a.example/x")!) == .write(self.a))
        #expect(machine.send(from: self.b) == .unknownSender)
        #expect(machine.route(self.b) == .notServed)
        // A late answer to an old request changes nothing.
        let check7 = machine.bindSucceeded(self.a, requestID: "b2", hostname: "a.example") == .stale
        #expect(check7)
    }

    @Test func addWhileRunningBindsAtOnceAndDuplicatesAreRefused() {
        var machine = self.running()
        let check8 = machine.add(self.b, requested: "b.example") == .added(bindNow: true, startLegacyStream: false)
        #expect(check8)
        let check9 = machine.add(HostnameKey("B.Example.")!, requested: "B.Example.") == .duplicate(existing: "b.example")
        #expect(check9)
        _ = machine.requestShutdown()
        let check10 = machine.add(HostnameKey("c.example")!, requested: "c.example") == .shuttingDown
        #expect(check10)
    }

    @Test func rebindAfterReconnectAndConflictRetry() {
        var machine = self.running()
        let check11 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check11)
        _ = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example")
        let closed = machine.streamClosed()
        #expect(closed.wasBound.map(\.1) == ["a.example"])
        #expect(machine.send(from: self.a) == .queue(self.a), "reconnecting: sends wait")
        #expect(machine.route(self.a) == .notServed)
        let check12 = machine.streamOpened(hasTLS: true) == [self.a]
        #expect(check12)
        let check13 = machine.bindStarted(self.a, requestID: "b2")
        #expect(check13)
        // The server still holds our dead stream: conflict on a re-bind is retried, not dropped.
        let check14 = machine.bindFailed(self.a, requestID: "b2", refusal: .conflict) == .retry(attempt: 1)
        #expect(check14)
        let check15 = machine.bindStarted(self.a, requestID: "b3")
        #expect(check15)
        let check16 = machine.bindFailed(self.a, requestID: "b3", refusal: .conflict) == .retry(attempt: 2)
        #expect(check16)
        let check17 = machine.bindStarted(self.a, requestID: "b4")
        #expect(check17)
        let check18 =
            machine.bindSucceeded(self.a, requestID: "b4", hostname: "a.example") == .bound(hostname: "a.example", rebind: true)
        #expect(check18)
        #expect(machine.hostnames[self.a]?.conflictRetries == 0)
    }

    @Test func aFirstBindRefusedWithConflictIsFinal() {
        var machine = self.running()
        let check19 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check19)
        let check20 = machine.bindFailed(self.a, requestID: "b1", refusal: .conflict) == .removed
        #expect(check20)
        #expect(machine.hostnames[self.a] == nil)
        #expect(machine.send(from: self.a) == .unknownSender)
    }

    @Test func aBindWithoutAnswerGoesBackToPending() {
        var machine = self.running()
        let check21 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check21)
        let check22 = machine.bindFailed(self.a, requestID: "b1", refusal: nil) == .pending
        #expect(check22)
        #expect(machine.hostnames[self.a]?.phase == .pending)
    }

    @Test func unbindHoldsSendsAndItemNotFoundRemoves() {
        var machine = self.running([self.a, self.b])
        for (key, id) in [(self.a, "b1"), (self.b, "b2")] {
            let check23 = machine.bindStarted(key, requestID: id)
            #expect(check23)
            _ = machine.bindSucceeded(key, requestID: id, hostname: key.description)
        }
        let check24 = machine.unbindStarted(self.a, requestID: "u1") == .send(hostname: "a.example")
        #expect(check24)
        // From the moment the unbind is sent, nothing leaves from the hostname...
        #expect(machine.send(from: self.a) == .queue(self.a))
        // ...while what the server routed before processing it still reaches the handler
        // (but no error is answered from it: the server may have processed the unbind).
        #expect(machine.route(self.a) == .deliver(self.a, mayAnswer: false))
        let check25 = machine.unbindStarted(self.a, requestID: "u2") == .inProgress
        #expect(check25)
        let check26 = machine.unbindAnswered(self.a, requestID: "u1", outcome: .succeeded) == .removed(hostname: "a.example")
        #expect(check26)
        #expect(machine.route(self.a) == .notServed)
        #expect(machine.send(from: self.a) == .unknownSender)
        // The server holds no such binding: removed here too (no phantom binding).
        let check27 = machine.unbindStarted(self.b, requestID: "u3") == .send(hostname: "b.example")
        #expect(check27)
        let check28 =
            machine.unbindAnswered(self.b, requestID: "u3", outcome: .refused(.itemNotFound)) == .removed(hostname: "b.example")
        #expect(check28)
        #expect(machine.hostnames.isEmpty)
    }

    @Test func aRefusedUnbindKeepsTheHostnameBound() {
        var machine = self.running()
        let check29 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check29)
        _ = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example")
        let check30 = machine.unbindStarted(self.a, requestID: "u1") == .send(hostname: "a.example")
        #expect(check30)
        let check31 =
            machine.unbindAnswered(self.a, requestID: "u1", outcome: .refused(.notAllowed))
            == .stillBound(hostname: "a.example", announce: false)
        #expect(check31)
        #expect(machine.send(from: self.a) == .write(self.a))
        let check32 = machine.unbindAnswered(self.a, requestID: "u1", outcome: .succeeded) == .stale
        #expect(check32)
    }

    @Test func unbindRacingAStreamClose() {
        var machine = self.running()
        let check33 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check33)
        _ = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example")
        let check34 = machine.unbindStarted(self.a, requestID: "u1") == .send(hostname: "a.example")
        #expect(check34)
        // The stream dies before the answer: the server dropped the binding with it.
        let closed = machine.streamClosed()
        #expect(closed.unbound.map(\.1) == ["a.example"])
        #expect(machine.hostnames[self.a] == nil)
        let check35 = machine.unbindAnswered(self.a, requestID: "u1", outcome: .noAnswer) == .stale
        #expect(check35)
    }

    @Test func unbindOfAHostnameNotYetBoundIsLocal() {
        var machine = self.running([self.a, self.b])
        let check36 = machine.unbindStarted(self.a, requestID: "u1") == .removedLocally(wasBinding: false)
        #expect(check36)
        let check40 = machine.unbindStarted(HostnameKey("c.example")!, requestID: "u3") == .notRegistered
        #expect(check40)
        // A bind in flight with no stream left to send an unbind on: local.
        let check37 = machine.bindStarted(self.b, requestID: "b1")
        #expect(check37)
        _ = machine.streamClosed()
        #expect(machine.hostnames[self.b]?.phase == .pending)
        let check38 = machine.unbindStarted(self.b, requestID: "u2") == .removedLocally(wasBinding: false)
        #expect(check38)
    }

    /// An unbind while the bind is in flight goes out behind it (the server answers in
    /// order); the bind's answer is set aside, and the handler, never told `bound`, is not
    /// told `unbound` either. Removing it locally instead left the server routing to a
    /// hostname nobody served.
    @Test func unbindWhileTheBindIsInFlightIsSentBehindIt() {
        var machine = self.running([self.a, self.b])
        let step1 = machine.bindStarted(self.a, requestID: "b1")
        #expect(step1)
        let step2 = machine.unbindStarted(self.a, requestID: "u1") == .send(hostname: "a.example")
        #expect(step2)
        let step3 = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example") == .stale
        #expect(step3)
        // Meanwhile nothing leaves from it, and what the server routes to it is taken without answers.
        let step4 = machine.unbindAnswered(self.a, requestID: "u1", outcome: .succeeded) == .removed(hostname: nil)
        #expect(step4)
        #expect(machine.hostnames[self.a] == nil)

        // A refused bind makes the unbind item-not-found: removed all the same.
        let step5 = machine.bindStarted(self.b, requestID: "b2")
        #expect(step5)
        let step6 = machine.unbindStarted(self.b, requestID: "u2") == .send(hostname: "b.example")
        #expect(step6)
        let step7 = machine.bindFailed(self.b, requestID: "b2", refusal: .notAllowed) == .stale
        #expect(step7)
        let step8 = machine.unbindAnswered(self.b, requestID: "u2", outcome: .refused(.itemNotFound)) == .removed(hostname: nil)
        #expect(step8)

        // An unbind the server refuses after a bind it granted: bound, and the handler is told so now.
        let c = HostnameKey("c.example")!
        let step9 = machine.add(c, requested: "c.example") == .added(bindNow: true, startLegacyStream: false)
        #expect(step9)
        let step10 = machine.bindStarted(c, requestID: "b3")
        #expect(step10)
        let step11 = machine.unbindStarted(c, requestID: "u3") == .send(hostname: "c.example")
        #expect(step11)
        let step12 =
            machine.unbindAnswered(c, requestID: "u3", outcome: .noAnswer) == .stillBound(hostname: "c.example", announce: true)
        #expect(step12)
        let step13 = machine.unbindStarted(c, requestID: "u4") == .send(hostname: "c.example")
        #expect(step13)
        let step14 = machine.unbindAnswered(c, requestID: "u4", outcome: .succeeded) == .removed(hostname: "c.example")
        #expect(step14)
    }

    @Test func instancesOfADomainAreDistinctHostnames() {
        let eu = HostnameKey("search.example/eu-1")!
        let us = HostnameKey("search.example/us-1")!
        var machine = self.running([eu, us])
        for (key, id) in [(eu, "b1"), (us, "b2")] {
            let check41 = machine.bindStarted(key, requestID: id)
            #expect(check41)
            _ = machine.bindSucceeded(key, requestID: id, hostname: key.description)
        }
        #expect(machine.route(HostnameKey(address: "search.example/us-1")!) == .deliver(us, mayAnswer: true))
        // To the domain or a JID under it: the instance the server chose (either is ours).
        #expect(machine.route(HostnameKey(address: "search.example")!) == .deliver(eu, mayAnswer: true))
        #expect(machine.route(HostnameKey(address: "room@search.example/nick")!) == .deliver(eu, mayAnswer: true))
        #expect(machine.send(from: HostnameKey(address: "search.example/us-1")!) == .write(us))
    }

    @Test func transfersAndRedirectsNeedTLS() {
        var machine = self.running(tls: false)
        let target = ConnectTarget(host: "other.example", port: 5270)
        #expect(machine.transfer(to: target) == .refusedWithoutTLS)
        let check42 = machine.seeOtherHost(target, fromStreamWithTLS: false) == .refusedWithoutTLS
        #expect(check42)
        let configured = ConnectTarget(host: "xmpp.example", port: 5270)
        let check43 = machine.nextTarget(configured: configured) == configured
        #expect(check43)

        var secure = self.running(tls: true)
        #expect(secure.transfer(to: target) == .accept(target))
        let check44 = secure.seeOtherHost(target, fromStreamWithTLS: true) == .follow(target)
        #expect(check44)
        let check45 = secure.nextTarget(configured: configured) == target
        #expect(check45)
        let check46 = secure.nextTarget(configured: configured) == configured
        #expect(check46, "a redirect is followed once")
    }

    @Test func seeOtherHostLoopsBackOff() {
        var machine = self.running()
        let target = ConnectTarget(host: "loop.example", port: 5270)
        for _ in 0..<ConnectionStateMachine.maximumRedirectsInARow {
            let check47 = machine.seeOtherHost(target, fromStreamWithTLS: true) == .follow(target)
            #expect(check47)
            _ = machine.nextTarget(configured: target)
        }
        let check48 = machine.seeOtherHost(target, fromStreamWithTLS: true) == .backOff
        #expect(check48)
        // A hostname bound on a stream ends the run of redirects.
        let check49 = machine.seeOtherHost(target, fromStreamWithTLS: true) == .follow(target)
        #expect(check49)
        let check50 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check50)
        _ = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example")
        #expect(machine.redirectsInARow == 0)
    }

    @Test func shutdownRemovesHostnamesWhenTheStreamCloses() {
        var machine = self.running([self.a, self.b])
        let check51 = machine.bindStarted(self.a, requestID: "b1")
        #expect(check51)
        _ = machine.bindSucceeded(self.a, requestID: "b1", hostname: "a.example")
        let check52 = machine.requestShutdown()
        #expect(check52)
        let check53 = !machine.requestShutdown()
        #expect(check53)
        let check54 = !machine.bindStarted(self.b, requestID: "b2")
        #expect(check54, "no new binds while shutting down")
        let closed = machine.streamClosed()
        #expect(closed.wasBound.map(\.1) == ["a.example"])
        #expect(machine.hostnames[self.a] == nil)
        let check55 = machine.finish() == [self.b]
        #expect(check55)
        #expect(machine.phase == .finished)
    }

    @Test func shutdownBeforeRunStartsShuttingDown() throws {
        var machine = ConnectionStateMachine(legacy: false)
        let check56 = !machine.requestShutdown()
        #expect(check56)
        let started = try machine.start()
        #expect(started == [])
        #expect(machine.phase == .shuttingDown)
        #expect(throws: ConnectionStateMachine.StartError.alreadyStarted) { try machine.start() }
    }

    @Test func legacyStreamsFollowTheSameStates() throws {
        var machine = ConnectionStateMachine(legacy: true)
        _ = machine.add(self.a, requested: "a.example")
        _ = try machine.start()
        let check57 = machine.add(self.b, requested: "b.example") == .added(bindNow: false, startLegacyStream: true)
        #expect(check57)
        let check58 = machine.legacyConnecting(self.a)
        #expect(check58)
        let check59 = !machine.legacyConnecting(self.a)
        #expect(check59)
        #expect(machine.route(self.a) == .deliver(self.a, mayAnswer: true))
        let check60 = machine.legacyConnected(self.a) == .bound(hostname: "a.example", rebind: false)
        #expect(check60)
        #expect(machine.send(from: self.a) == .write(self.a))
        let check61 = machine.legacyClosed(self.a) == "a.example"
        #expect(check61)
        #expect(machine.send(from: self.a) == .queue(self.a))
        let check62 = machine.legacyConnecting(self.a)
        #expect(check62)
        machine.legacyFailed(self.a, definitive: true)
        #expect(machine.hostnames[self.a] == nil)
        // Unbinding a XEP-0114 hostname is closing its stream: local.
        let check63 = machine.legacyConnecting(self.b)
        #expect(check63)
        _ = machine.legacyConnected(self.b)
        let check64 = machine.unbindStarted(self.b, requestID: "u1") == .removedLocally(wasBinding: false)
        #expect(check64)
    }
}
