import Foundation
import NIOCore
import Testing

@testable import JetStream

@Suite struct JetStreamUnitTests {
    @Test func pubAcksAreReadByTheFastScan() throws {
        #expect(PubAck.fastParse(ByteBuffer(string: #"{"stream":"ORDERS","seq":42}"#)) == PubAck(stream: "ORDERS", sequence: 42))
        #expect(PubAck.fastParse(ByteBuffer(string: #"{"stream":"ORDERS","seq":7,"duplicate":true}"#)) == PubAck(stream: "ORDERS", sequence: 7, duplicate: true))
        // Anything else goes through JSONDecoder.
        #expect(PubAck.fastParse(ByteBuffer(string: #"{"stream":"S","seq":1,"domain":"hub"}"#)) == nil)
        #expect(try PubAck.parse(ByteBuffer(string: #"{"stream":"S","seq":1,"domain":"hub"}"#), subject: "s") == PubAck(stream: "S", sequence: 1, domain: "hub"))
    }

    @Test func aPubAckErrorIsThrownWithTheServersWords() {
        let answer = ByteBuffer(string: #"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"S","seq":0}"#)
        do {
            _ = try PubAck.parse(answer, subject: "orders.new")
            Issue.record("no error")
        } catch let error as JetStreamError {
            #expect(error.code == 400)
            #expect(error.errorCode == JetStreamError.ErrorCode.wrongLastSequence)
            #expect(error.description == "jetstream: orders.new: wrong last sequence: 3 (status 400, err_code 10071)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// Found by a clean-clone CI run: under load a publish's ack timed out, its retry was answered
    /// "duplicate message id is in process" (the first attempt still being stored) and the caller was
    /// told the write failed. That answer, like a 503, is retried: the next attempt is acknowledged.
    @Test func aRetryFindingItsFirstAttemptInProcessIsRetriedAgain() throws {
        let answer = ByteBuffer(string: #"{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"},"stream":"S","seq":0}"#)
        do {
            _ = try PubAck.parse(answer, subject: "presence.events")
            Issue.record("no error")
        } catch let error as JetStreamError {
            #expect(JetStream.isRetryable(error))
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(JetStream.isRetryable(JetStreamError(code: 503, errorCode: nil, description: "no leader", subject: "s")))
        #expect(!JetStream.isRetryable(JetStreamError(code: 400, errorCode: JetStreamError.ErrorCode.wrongLastSequence, description: "wrong last sequence", subject: "s")))
        #expect(!JetStream.isRetryable(JetStreamError(code: 404, errorCode: JetStreamError.ErrorCode.streamNotFound, description: "stream not found", subject: "s")))
    }

    @Test func ackSubjectsOfBothFormsGiveTheMessagesSequences() throws {
        let v1 = try #require(AckMetadata(replySubject: "$JS.ACK.ORDERS.worker.2.42.7.1733222400000000000.3"))
        #expect(v1 == AckMetadata(domain: nil, stream: "ORDERS", consumer: "worker", delivered: 2, streamSequence: 42, consumerSequence: 7,
                                  timestamp: 1_733_222_400_000_000_000, pending: 3))
        let v2 = try #require(AckMetadata(replySubject: "$JS.ACK.hub.ACCHASH.ORDERS.worker.1.43.8.1733222400000000001.0.r4nd0m"))
        #expect(v2.domain == "hub" && v2.stream == "ORDERS" && v2.streamSequence == 43 && v2.consumerSequence == 8 && v2.pending == 0)
        let v2NoDomain = try #require(AckMetadata(replySubject: "$JS.ACK._.ACCHASH.ORDERS.worker.1.44.9.1.0"))
        #expect(v2NoDomain.domain == nil && v2NoDomain.streamSequence == 44)
        #expect(AckMetadata(replySubject: "$JS.ACK.ORDERS.worker.2.42.7") == nil)
        #expect(AckMetadata(replySubject: "_INBOX.abc.1.2.3.4.5.6.7") == nil)
        #expect(AckMetadata(replySubject: "$JS.ACK.ORDERS.worker.x.42.7.1.3") == nil)
    }

    @Test func streamConfigTravelsWithWireNamesAndNanoseconds() throws {
        var config = StreamConfig(name: "PRESENCE", subjects: ["presence.>"], storage: .file, replicas: 3, duplicateWindow: .seconds(120))
        config.maxAge = .seconds(3600)
        let json = String(decoding: try JSONEncoder().encode(config), as: UTF8.self)
        #expect(json.contains(#""num_replicas":3"#))
        #expect(json.contains(#""duplicate_window":120000000000"#))
        #expect(json.contains(#""max_age":3600000000000"#))
        #expect(json.contains(#""storage":"file""#))
        let back = try JSONDecoder().decode(StreamConfig.self, from: Data(json.utf8))
        #expect(back == config)
    }
}

extension AckMetadata {
    init(domain: String?, stream: String, consumer: String, delivered: UInt64, streamSequence: UInt64, consumerSequence: UInt64, timestamp: UInt64, pending: UInt64) {
        self.init(replySubject: "$JS.ACK.\(stream).\(consumer).\(delivered).\(streamSequence).\(consumerSequence).\(timestamp).\(pending)")!
        self.domain = domain
    }
}
