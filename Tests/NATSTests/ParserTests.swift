import NIOCore
import Testing

@testable import NATS

/// A byte stream nats-server 2.15.1 sent to a raw socket (INFO, the PONG of the handshake, a second INFO,
/// MSG with and without reply, HMSG with a header, a payload holding CRLF and "MSG", the 503 "no responders"
/// HMSG, PONG and a -ERR), followed by hand-written operations a server also sends: PING, +OK, lower-case
/// names, a JetStream idle heartbeat (status and description) and a message with a `$JS.ACK` reply.
let recordedStream: String = #"""
INFO {"server_id":"NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP","server_name":"NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP","version":"2.15.1","proto":1,"git_commit":"b2fd3ef","go":"go1.27.2","host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"jetstream":true,"client_id":5,"client_ip":"127.0.0.1","api_lvl":5,"xkey":"XBCRR3HRNEXZJBH66PC3EK25GKPPCV74IRGSCWMWLZA3NB7GLYXHWPJQ"} \#r
PONG\#r
INFO {"server_id":"NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP","server_name":"NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP","version":"2.15.1","proto":1,"git_commit":"b2fd3ef","go":"go1.27.2","host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"jetstream":true,"client_id":5,"client_ip":"127.0.0.1","connect_info":true,"remote_account":"$G","api_lvl":5,"xkey":"XBCRR3HRNEXZJBH66PC3EK25GKPPCV74IRGSCWMWLZA3NB7GLYXHWPJQ","connect_urls":["127.0.0.1:14223"]} \#r
MSG greet.joe 1 5\#r
hello\#r
MSG greet.ann 1 _INBOX.abc.7 0\#r
\#r
HMSG greet.bob 1 29 34\#r
NATS/1.0\#r
Nats-Msg-Id: a1\#r
\#r
body!\#r
MSG greet.crlf 1 12\#r
line1\#r
MSG x\#r
HMSG _INBOX.abc.9 2 43 43\#r
NATS/1.0 503\#r
Nats-Subject: nobody.here\#r
\#r
\#r
PONG\#r
-ERR 'Unknown Protocol Operation'\#r
PING\#r
+OK\#r
msg lower.case	3	2\#r
ok\#r
HMSG _INBOX.abc.10 2 31 31\#r
NATS/1.0 100 Idle Heartbeat\#r
\#r
\#r
MSG orders.new 2 $JS.ACK.ORDERS.worker.1.42.7.1733222400000000000.3 4\#r
data\#r

"""#

/// The operations of `recordedStream`, one line each.
let recordedOperations = [
    "INFO server=NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP version=2.15.1 max_payload=1048576 urls=[]",
    "PONG",
    "INFO server=NBNCTCYNE2DYQDYWDDFGC62WR4IVYAUS7O6Q3D634F3YO6HHSK32FKEP version=2.15.1 max_payload=1048576 urls=[\"127.0.0.1:14223\"]",
    "MSG greet.joe sid=1 reply=- headers=- payload=\"hello\"",
    "MSG greet.ann sid=1 reply=_INBOX.abc.7 headers=- payload=\"\"",
    "MSG greet.bob sid=1 reply=- headers=\"NATS/1.0\\r\\nNats-Msg-Id: a1\\r\\n\\r\\n\" payload=\"body!\"",
    "MSG greet.crlf sid=1 reply=- headers=- payload=\"line1\\r\\nMSG x\"",
    "MSG _INBOX.abc.9 sid=2 reply=- headers=\"NATS/1.0 503\\r\\nNats-Subject: nobody.here\\r\\n\\r\\n\" payload=\"\"",
    "PONG",
    "ERR Unknown Protocol Operation",
    "PING",
    "OK",
    "MSG lower.case sid=3 reply=- headers=- payload=\"ok\"",
    "MSG _INBOX.abc.10 sid=2 reply=- headers=\"NATS/1.0 100 Idle Heartbeat\\r\\n\\r\\n\" payload=\"\"",
    "MSG orders.new sid=2 reply=$JS.ACK.ORDERS.worker.1.42.7.1733222400000000000.3 headers=- payload=\"data\"",
]

func describe(_ op: ServerOp) -> String {
    func quoted(_ buffer: ByteBuffer) -> String {
        "\"" + String(buffer: buffer).replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n") + "\""
    }
    switch op {
    case .info(let info):
        return "INFO server=\(info.serverID) version=\(info.version) max_payload=\(info.maxPayload) urls=\(info.connectURLs ?? [])"
    case .msg(let message):
        return "MSG \(message.subject) sid=\(message.sid) reply=\(message.replyTo ?? "-") headers=\(message.headerBytes.map(quoted) ?? "-") payload=\(quoted(message.payload))"
    case .ping: return "PING"
    case .pong: return "PONG"
    case .ok: return "OK"
    case .err(let text): return "ERR \(text)"
    }
}

/// Feeds `chunks` to one parser in turn and describes what comes out.
func parse(_ chunks: [ByteBuffer]) throws -> [String] {
    var parser = NATSParser()
    var seen: [String] = []
    for chunk in chunks {
        try parser.parse(chunk) { seen.append(describe($0)) }
    }
    return seen
}

@Suite struct ParserTests {
    let stream = ByteBuffer(string: recordedStream)

    @Test func recordedStreamInOneReadGivesEveryOperation() throws {
        #expect(try parse([stream]) == recordedOperations)
    }

    @Test func everySplitPointGivesTheSameOperations() throws {
        let bytes = Array(stream.readableBytesView)
        for split in 0...bytes.count {
            let chunks = [ByteBuffer(bytes: bytes[..<split]), ByteBuffer(bytes: bytes[split...])]
            let seen = try parse(chunks)
            #expect(seen == recordedOperations, "split at byte \(split)")
            if seen != recordedOperations { return }
        }
    }

    @Test func everyPairOfSplitPointsAroundTheMessagesGivesTheSameOperations() throws {
        // Three reads, cut at any two points of the message part (after the INFOs): a body or line may
        // start in one read, cross the whole second and end in the third.
        let bytes = Array(stream.readableBytesView)
        let start = bytes.count - 450
        for first in start...bytes.count {
            for second in first...bytes.count where (second - first) % 7 == 0 || second - first < 24 {
                let chunks = [ByteBuffer(bytes: bytes[..<first]), ByteBuffer(bytes: bytes[first..<second]), ByteBuffer(bytes: bytes[second...])]
                let seen = try parse(chunks)
                #expect(seen == recordedOperations, "splits at \(first) and \(second)")
                if seen != recordedOperations { return }
            }
        }
    }

    @Test func oneByteAtATimeGivesTheSameOperations() throws {
        let chunks = stream.readableBytesView.map { ByteBuffer(bytes: [$0]) }
        #expect(try parse(chunks) == recordedOperations)
    }

    @Test func aBodyInOneReadIsASliceOfThatRead() throws {
        var parser = NATSParser()
        var input = ByteBuffer(string: "MSG a 1 5\r\nhello\r\n")
        var payload: ByteBuffer?
        try parser.parse(input) { op in
            if case .msg(let message) = op { payload = message.payload }
        }
        // A slice shares the read's storage: writing into the read afterwards (copy on write) leaves the
        // slice as it was, and the slice's bytes sit at the read's address plus the offset.
        let sliceAddress = payload?.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let readAddress = input.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(sliceAddress == readAddress + 11)
        input.clear()
        #expect(payload.map { String(buffer: $0) } == "hello")
    }

    @Test func statusIsReadWithoutParsingHeaders() throws {
        let statuses = try [ByteBuffer(string: "HMSG s 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"),
                            ByteBuffer(string: "HMSG s 1 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n"),
                            ByteBuffer(string: "HMSG s 1 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n\r\n")].map { chunk -> Int? in
            var parser = NATSParser()
            var status: Int??
            try parser.parse(chunk) { if case .msg(let message) = $0 { status = message.status } }
            return status ?? nil
        }
        #expect(statuses == [503, 408, nil])
    }

    @Test(arguments: [
        ("BOGUS\r\n", "unknown operation"),
        ("MSG a 1\r\n", "MSG needs 3 or 4 arguments"),
        ("MSG a x 5\r\nhello\r\n", "sid is not a number"),
        ("MSG a 1 -5\r\n", "size is not a number"),
        ("HMSG a 1 9 5\r\n", "header size larger than the total size"),
        ("MSG a 1 5\r\nhelloXX", "not followed by CRLF"),
        ("MSG a 1 99999999999\r\n", "larger than the"),
        ("INFO {not json}\r\n", "INFO is not the JSON expected"),
    ])
    func brokenInputIsAProtocolErrorThatQuotesTheLine(input: String, expected: String) {
        var parser = NATSParser()
        parser.maxPayload = 1 << 20
        do {
            try parser.parse(ByteBuffer(string: input)) { _ in }
            Issue.record("no error for \(input.debugDescription)")
        } catch let error as NATSError {
            #expect(error.code == .protocolError)
            #expect(error.description.contains(expected), "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func aControlLineWithoutEndIsRefusedPastItsLimit() {
        var parser = NATSParser()
        let chunk = ByteBuffer(repeating: UInt8(ascii: "A"), count: 1024)
        #expect(throws: NATSError.self) {
            for _ in 0..<(NATSParser.maxControlLine / 1024 + 1) { try parser.parse(chunk) { _ in } }
        }
    }
}

@Suite struct HeaderTests {
    @Test func headersParseWithStatusDescriptionAndFieldsInOrder() throws {
        let block = ByteBuffer(string: "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nX: a\r\nx: b\r\n\r\n")
        let headers = try #require(NATSHeaders.parse(block))
        #expect(headers.status == 408)
        #expect(headers.statusDescription == "Request Timeout")
        #expect(headers.fields.map(\.name) == ["Nats-Pending-Messages", "X", "x"])
        #expect(headers["nats-pending-messages"] == "3")
        #expect(headers.values(for: "X") == ["a", "b"])
        #expect(NATSHeaders.status(of: block) == 408)
    }

    @Test func encodedLengthIsWhatEncodeWrites() {
        var headers = NATSHeaders()
        headers.append("Nats-Msg-Id", "order-17")
        headers.append("Nats-Expected-Last-Sequence", "41")
        headers.append("Third", "é")
        var buffer = ByteBuffer()
        headers.encode(into: &buffer)
        #expect(buffer.readableBytes == headers.encodedLength)
        #expect(String(buffer: buffer) == "NATS/1.0\r\nNats-Msg-Id: order-17\r\nNats-Expected-Last-Sequence: 41\r\nThird: é\r\n\r\n")
        #expect(NATSHeaders.parse(buffer) == headers)
    }

    @Test func headersThatCannotTravelAreRefused() {
        #expect(NATSHeaders([("Bad Name", "x")]).validationProblem() != nil)
        #expect(NATSHeaders([("Name", "line\r\nbreak")]).validationProblem() != nil)
        #expect(NATSHeaders([("Name", "fine")]).validationProblem() == nil)
    }
}
