import Testing

@testable import NATS

@Suite struct StateMachineTests {
    let a = NATSServerAddress(host: "127.0.0.1", port: 4001, user: "joe", password: "pw")
    let b = NATSServerAddress(host: "127.0.0.1", port: 4002)
    let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(1), jitter: .milliseconds(50), maxAttempts: 6)

    func attempt(_ action: ConnectionStateMachine.Action) -> UInt64? {
        if case .connect(_, let attempt) = action { attempt } else { nil }
    }

    @Test func initialConnectTriesEachServerOnceThenFailsWithWhatEachSaid() throws {
        var machine = ConnectionStateMachine(servers: [a, b], policy: policy, seed: 1)
        let first = machine.start()
        #expect(first == .connect(a, attempt: 1))
        let second = machine.attemptFailed(attempt: 1, reason: "connection refused")
        #expect(second == .connect(b, attempt: 2))
        let end = machine.attemptFailed(attempt: 2, reason: "Authorization Violation")
        #expect(end == .failInitialConnect("127.0.0.1:4001: connection refused; 127.0.0.1:4002: Authorization Violation"))
        #expect(machine.isClosed)
    }

    @Test func aLostConnectionGoesToTheNextServerAtOnceThenBacksOffWithJitter() throws {
        var machine = ConnectionStateMachine(servers: [a, b], policy: policy, seed: 7)
        _ = machine.start()
        #expect(machine.handshakeCompleted(attempt: 1) == .connected(a, isReconnect: false))
        #expect(machine.connectionLost() == .connect(b, attempt: 2))
        var delays: [Duration] = []
        var current: UInt64 = 2
        for _ in 0..<4 {
            guard case .wait(let delay) = machine.attemptFailed(attempt: current, reason: "refused") else {
                Issue.record("expected a wait")
                return
            }
            delays.append(delay)
            current = try #require(attempt(machine.timerFired()))
        }
        // 100, 200, 400, 800 ms (then 1 s at most), each plus up to 50 ms of jitter.
        for (index, delay) in delays.enumerated() {
            let base = Duration.milliseconds(100 << index)
            #expect(delay >= base && delay < base + .milliseconds(50), "delay \(index): \(delay)")
        }
        #expect(Set(delays.enumerated().map { $0.element - .milliseconds(100 << $0.offset) }).count > 1, "jitter varies")
        #expect(machine.handshakeCompleted(attempt: current) == .connected(b, isReconnect: true))
        #expect(machine.reconnects == 1)
        #expect(machine.failures == 0)
    }

    @Test func theSameSeedGivesTheSameJitter() {
        func delays(seed: UInt64) -> [Duration] {
            var machine = ConnectionStateMachine(servers: [a], policy: policy, seed: seed)
            _ = machine.start()
            _ = machine.handshakeCompleted(attempt: 1)
            _ = machine.connectionLost()
            var result: [Duration] = []
            var current: UInt64 = 2
            for _ in 0..<3 {
                if case .wait(let delay) = machine.attemptFailed(attempt: current, reason: "x") { result.append(delay) }
                current = attempt(machine.timerFired()) ?? 0
            }
            return result
        }
        #expect(delays(seed: 3) == delays(seed: 3))
        #expect(delays(seed: 3) != delays(seed: 4))
    }

    @Test func tooManyFailedAttemptsClose() {
        var machine = ConnectionStateMachine(servers: [a], policy: policy, seed: 1)
        _ = machine.start()
        _ = machine.handshakeCompleted(attempt: 1)
        var action = machine.connectionLost()
        var last: ConnectionStateMachine.Action = .none
        for _ in 0..<10 {
            guard let current = attempt(action) else { break }
            last = machine.attemptFailed(attempt: current, reason: "refused")
            action = machine.timerFired()
        }
        #expect(last == .close("gave up after 6 failed reconnect attempts (last: 127.0.0.1:4001: refused)"))
        #expect(machine.isClosed)
    }

    @Test func callbacksOfAnOldAttemptAreIgnored() {
        var machine = ConnectionStateMachine(servers: [a, b], policy: policy, seed: 1)
        _ = machine.start()
        _ = machine.attemptFailed(attempt: 1, reason: "refused")  // now attempt 2 on b
        #expect(machine.handshakeCompleted(attempt: 1) == .none)
        #expect(machine.attemptFailed(attempt: 1, reason: "late") == .none)
        #expect(machine.handshakeCompleted(attempt: 2) == .connected(b, isReconnect: false))
        #expect(machine.timerFired() == .none)
    }

    @Test func closeWorksFromAnyStateOnce() {
        var machine = ConnectionStateMachine(servers: [a], policy: policy, seed: 1)
        _ = machine.start()
        #expect(machine.closeRequested() == .close(nil))
        #expect(machine.closeRequested() == .none)
        #expect(machine.handshakeCompleted(attempt: 1) == .none)
        #expect(machine.connectionLost() == .none)
    }

    @Test func serversLearntFromInfoJoinTheRotationWithTheFirstServersCredentials() {
        var machine = ConnectionStateMachine(servers: [a], policy: policy, seed: 1)
        _ = machine.start()
        machine.learn(connectURLs: ["127.0.0.1:4001", "127.0.0.1:4003", "127.0.0.1:4003", "not a url:x"])
        #expect(machine.pool.servers.map(\.port) == [4001, 4003])
        #expect(machine.pool.servers[1].user == "joe")
        _ = machine.handshakeCompleted(attempt: 1)
        #expect(machine.connectionLost() == .connect(NATSServerAddress(host: "127.0.0.1", port: 4003, user: "joe", password: "pw"), attempt: 2))
    }

    @Test func reconnectDelayGrowsToItsCap() {
        let policy = ReconnectPolicy(initialDelay: .milliseconds(50), maxDelay: .seconds(2), jitter: .zero)
        #expect(policy.delay(afterFailures: 0, unit: 0.5) == .zero)
        #expect(policy.delay(afterFailures: 1, unit: 0.5) == .milliseconds(50))
        #expect(policy.delay(afterFailures: 3, unit: 0.5) == .milliseconds(200))
        #expect(policy.delay(afterFailures: 40, unit: 0.5) == .seconds(2))
    }
}
