import Foundation
import NIOCore
import Testing

@testable import NATS

@Suite struct EncoderTests {
    func encoded(_ ops: ClientOp...) -> String {
        var buffer = ByteBuffer()
        for op in ops { op.encode(into: &buffer) }
        return String(buffer: buffer)
    }

    @Test func publishesSubscriptionsAndPingsHaveTheirWireForm() {
        #expect(encoded(.pub(subject: .string("greet.joe"), reply: nil, payload: ByteBuffer(string: "hello"))) == "PUB greet.joe 5\r\nhello\r\n")
        #expect(encoded(.pub(subject: .string("svc"), reply: .inbox(prefix: "_INBOX.abc.", token: 42), payload: ByteBuffer()))
            == "PUB svc _INBOX.abc.42 0\r\n\r\n")
        #expect(encoded(.pub(subject: .bytes(ByteBuffer(string: "$JS.ACK.S.C.1.2.3.4.5")), reply: nil, payload: ByteBuffer(string: "+ACK")))
            == "PUB $JS.ACK.S.C.1.2.3.4.5 4\r\n+ACK\r\n")
        #expect(encoded(.hpub(subject: .string("orders.new"), reply: .string("r.1"), headers: NATSHeaders([("Nats-Msg-Id", "o-17")]), payload: ByteBuffer(string: "{}")))
            == "HPUB orders.new r.1 31 33\r\nNATS/1.0\r\nNats-Msg-Id: o-17\r\n\r\n{}\r\n")
        #expect(encoded(.sub(subject: "greet.*", queue: nil, sid: 7), .sub(subject: "work", queue: "workers", sid: 8))
            == "SUB greet.* 7\r\nSUB work workers 8\r\n")
        #expect(encoded(.unsub(sid: 7, max: nil), .unsub(sid: 8, max: 10)) == "UNSUB 7\r\nUNSUB 8 10\r\n")
        #expect(encoded(.ping, .pong) == "PING\r\nPONG\r\n")
    }

    @Test func connectSendsTheFieldsTheServerReads() throws {
        var info = ConnectInfo()
        info.user = "joe"
        info.password = "secret"
        info.name = "presence-1"
        let line = encoded(.connect(info))
        #expect(line.hasPrefix("CONNECT {"))
        #expect(line.hasSuffix("}\r\n"))  // "\r\n" is one Character: dropLast(1) below drops both
        let json = try #require(JSONSerialization.jsonObject(with: Data(line.dropFirst(8).dropLast(1).utf8)) as? [String: Any])
        #expect(json["verbose"] as? Bool == false)
        #expect(json["headers"] as? Bool == true)
        #expect(json["no_responders"] as? Bool == true)
        #expect(json["protocol"] as? Int == 1)
        #expect(json["user"] as? String == "joe")
        #expect(json["pass"] as? String == "secret")
        #expect(json["auth_token"] == nil)
        #expect(json["name"] as? String == "presence-1")
    }

    @Test(arguments: [UInt64(0), 9, 10, 99, 100, 12_345, 1_000_000_007, UInt64.max])
    func decimalsAreWrittenWithoutStrings(value: UInt64) {
        var buffer = ByteBuffer()
        buffer.writeDecimal(value)
        #expect(String(buffer: buffer) == String(value))
    }

    @Test func subjectsWithSpacesOrNothingAreRefused() {
        #expect(ClientOp.subjectProblem("") != nil)
        #expect(ClientOp.subjectProblem("a b") != nil)
        #expect(ClientOp.subjectProblem("a\tb") != nil)
        #expect(ClientOp.subjectProblem("a\r\nPUB x") != nil)
        #expect(ClientOp.subjectProblem("orders.*.new.>") == nil)
    }

    @Test func serverAddressesParseWithCredentials() throws {
        let plain = try NATSServerAddress(parsing: "127.0.0.1:4333")
        #expect(plain == NATSServerAddress(host: "127.0.0.1", port: 4333))
        let user = try NATSServerAddress(parsing: "nats://joe:s3cret@localhost:4222")
        #expect(user.user == "joe" && user.password == "s3cret" && user.host == "localhost")
        let token = try NATSServerAddress(parsing: "nats://t0ken@example")
        #expect(token.token == "t0ken" && token.port == 4222)
        #expect(throws: NATSError.self) { try NATSServerAddress(parsing: "tls://host:4222") }
        #expect(throws: NATSError.self) { try NATSServerAddress(parsing: "nats://host:99999") }
        #expect(user.description == "localhost:4222")  // no credentials in logs and errors
    }

    @Test func inboxTokensAreReadFromTheSubjectsEnd() {
        #expect(NATSConnection.lastTokenNumber(ByteBuffer(string: "_INBOX.abc.12345")) == 12345)
        #expect(NATSConnection.lastTokenNumber(ByteBuffer(string: "_INBOX.abc.x1")) == nil)
        #expect(NATSConnection.lastTokenNumber(ByteBuffer(string: "_INBOX.abc.")) == nil)
    }
}
