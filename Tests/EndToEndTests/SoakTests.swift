import Foundation
import Testing

/// The soak (issue 18) for two minutes: tools/soak.py drives gateways posting events, chat clients
/// holding sockets and sending messages, and HTTP readers against this build's `presence serve`,
/// SIGKILLs it every 8-20 s and starts it again, then checks that every acknowledged event and message
/// is where its acknowledgement said, that the live state equals a fresh fold of the log, that every
/// client's view of its peers equals both, and that `presence audit` exits 0. The 30-minute run with
/// its figures is in RELIABILITY.md.
@Suite struct SoakTests {
    static let script = CLI.repository.appendingPathComponent("tools/soak.py").path

    @Test func twoMinutesOfMixedLoadWithKill9sLoseNothingAcknowledged() throws {
        // Two gateways and ten clients: the rest of the suite runs beside it on a small machine.
        let result = try CLI.run(CLI.python, [Self.script, "--bin", CLI.presence, "--duration", "120", "--kill-every", "8-20",
                                              "--min-kills", "3", "--gateways", "2", "--clients", "10", "--timeout", "90"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr.suffix(3000))")
        #expect(result.stdout.contains("soak.py: every check passed"), "\(result.stdout)")
        for check in ["acknowledged events is in the log at the offset it was acknowledged with",
                      "acknowledged messages is at its seq, seqs without gaps",
                      "equals a fresh fold of the log", "after its last push equals `presence state`",
                      "`presence audit` exits 0"] {
            #expect(result.stdout.contains(check), "\(check): \(result.stdout)")
        }
        print(result.stdout.split(separator: "\n").filter { $0.hasPrefix("soak: ") }.joined(separator: "\n"))
    }
}
