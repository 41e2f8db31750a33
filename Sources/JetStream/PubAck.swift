import Foundation
import NIOCore

/// JetStream's answer to a publish: the message is stored (on a majority of the replicas) at `sequence`.
///
/// On the wire: `{"stream":"orders","seq":42}`, with `"duplicate":true` when a message with the same
/// `Nats-Msg-Id` was already stored within the duplicate window (then `seq` is that message's).
public struct PubAck: Sendable, Equatable {
    public var stream: String
    public var sequence: UInt64
    /// True when this publish was dropped as a repeat of an earlier one with the same `Nats-Msg-Id`.
    public var duplicate: Bool
    public var domain: String?

    public init(stream: String, sequence: UInt64, duplicate: Bool = false, domain: String? = nil) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
        self.domain = domain
    }

    /// Reads a PubAck, or throws the ``JetStreamError`` the server answered with instead.
    ///
    /// The server writes this JSON with `encoding/json` (no spaces, fields in a fixed order), so the common
    /// case is read by a scan over the bytes without allocating; anything else goes through `JSONDecoder`.
    static func parse(_ payload: ByteBuffer, subject: String) throws -> PubAck {
        if let fast = fastParse(payload) { return fast }
        struct Wire: Decodable {
            var stream: String?
            var seq: UInt64?
            var duplicate: Bool?
            var domain: String?
            var error: APIErrorBody?
        }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(payload.readableBytesView))
        } catch {
            throw JetStreamError(code: 0, errorCode: nil, description: "the answer is not a PubAck: '\(String(buffer: payload).prefix(200))'", subject: subject)
        }
        if let error = wire.error {
            throw JetStreamError(code: error.code, errorCode: error.errCode, description: error.description ?? "no description", subject: subject, stream: wire.stream)
        }
        guard let stream = wire.stream, let seq = wire.seq else {
            throw JetStreamError(code: 0, errorCode: nil, description: "the PubAck has no stream or seq: '\(String(buffer: payload).prefix(200))'", subject: subject)
        }
        return PubAck(stream: stream, sequence: seq, duplicate: wire.duplicate ?? false, domain: wire.domain)
    }

    /// `{"stream":"NAME","seq":N}` optionally followed by `,"duplicate":true`, and nothing else; nil otherwise.
    static func fastParse(_ payload: ByteBuffer) -> PubAck? {
        payload.withUnsafeReadableBytes { bytes -> PubAck? in
            let prefix: StaticString = #"{"stream":""#
            var index = 0
            guard match(bytes, &index, prefix) else { return nil }
            let nameStart = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") { index += 1 }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[nameStart..<index]), as: UTF8.self)
            index += 1
            guard match(bytes, &index, #","seq":"#) else { return nil }
            var sequence: UInt64 = 0
            var digits = 0
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57, digits < 19 {
                sequence = sequence &* 10 &+ UInt64(bytes[index] &- 48)  // 19 digits at most: below 2^64
                index += 1
                digits += 1
            }
            guard digits > 0 else { return nil }
            var duplicate = false
            if match(bytes, &index, #","duplicate":true"#) { duplicate = true }
            guard index == bytes.count - 1, bytes[index] == UInt8(ascii: "}") else { return nil }
            return PubAck(stream: name, sequence: sequence, duplicate: duplicate)
        }
    }

    private static func match(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, _ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { return false }
        let literalBytes = UnsafeRawBufferPointer(start: literal.utf8Start, count: count)
        for offset in 0..<count where bytes[index + offset] != literalBytes[offset] { return false }
        index += count
        return true
    }
}
