import Foundation
import NIOCore

/// A subject as the client writes it: a string, bytes received from the server (a reply subject to answer
/// or acknowledge), or an inbox prefix and a request number written in decimal. The last two let the hot
/// paths (acks, requests) write a subject without building a String.
enum WireSubject: Sendable {
    case string(String)
    case bytes(ByteBuffer)
    case inbox(prefix: String, token: UInt64)

    func write(into buffer: inout ByteBuffer) {
        switch self {
        case .string(let subject): buffer.writeString(subject)
        case .bytes(let bytes): buffer.writeImmutableBuffer(bytes)
        case .inbox(let prefix, let token):
            buffer.writeString(prefix)
            buffer.writeDecimal(token)
        }
    }

    /// The subject as text, for error messages.
    var text: String {
        switch self {
        case .string(let subject): subject
        case .bytes(let bytes): String(buffer: bytes)
        case .inbox(let prefix, let token): prefix + String(token)
        }
    }
}

/// An operation the client sends. Each case's wire form is written by ``encode(into:)``:
///
/// ```
/// CONNECT {"verbose":false,...}␍␊
/// PUB <subject> [reply-to] <#bytes>␍␊<payload>␍␊
/// HPUB <subject> [reply-to] <#header bytes> <#total bytes>␍␊<headers><payload>␍␊
/// SUB <subject> [queue group] <sid>␍␊
/// UNSUB <sid> [max_msgs]␍␊
/// PING␍␊ / PONG␍␊
/// ```
enum ClientOp: Sendable {
    case connect(ConnectInfo)
    case pub(subject: WireSubject, reply: WireSubject?, payload: ByteBuffer)
    case hpub(subject: WireSubject, reply: WireSubject?, headers: NATSHeaders, payload: ByteBuffer)
    case sub(subject: String, queue: String?, sid: UInt64)
    case unsub(sid: UInt64, max: UInt64?)
    case ping
    case pong

    func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .connect(let info):
            buffer.writeString("CONNECT ")
            // Encoding a struct of strings, numbers and booleans cannot fail.
            let json = (try? JSONEncoder().encode(info)) ?? Data("{}".utf8)
            buffer.writeBytes(json)
            buffer.writeCRLF()
        case .pub(let subject, let reply, let payload):
            buffer.writeString("PUB ")
            subject.write(into: &buffer)
            buffer.writeInteger(UInt8(ascii: " "))
            if let reply {
                reply.write(into: &buffer)
                buffer.writeInteger(UInt8(ascii: " "))
            }
            buffer.writeDecimal(UInt64(payload.readableBytes))
            buffer.writeCRLF()
            buffer.writeImmutableBuffer(payload)
            buffer.writeCRLF()
        case .hpub(let subject, let reply, let headers, let payload):
            let headerLength = headers.encodedLength
            buffer.writeString("HPUB ")
            subject.write(into: &buffer)
            buffer.writeInteger(UInt8(ascii: " "))
            if let reply {
                reply.write(into: &buffer)
                buffer.writeInteger(UInt8(ascii: " "))
            }
            buffer.writeDecimal(UInt64(headerLength))
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeDecimal(UInt64(headerLength + payload.readableBytes))
            buffer.writeCRLF()
            headers.encode(into: &buffer)
            buffer.writeImmutableBuffer(payload)
            buffer.writeCRLF()
        case .sub(let subject, let queue, let sid):
            buffer.writeString("SUB ")
            buffer.writeString(subject)
            buffer.writeInteger(UInt8(ascii: " "))
            if let queue {
                buffer.writeString(queue)
                buffer.writeInteger(UInt8(ascii: " "))
            }
            buffer.writeDecimal(sid)
            buffer.writeCRLF()
        case .unsub(let sid, let max):
            buffer.writeString("UNSUB ")
            buffer.writeDecimal(sid)
            if let max {
                buffer.writeInteger(UInt8(ascii: " "))
                buffer.writeDecimal(max)
            }
            buffer.writeCRLF()
        case .ping:
            buffer.writeString("PING\r\n")
        case .pong:
            buffer.writeString("PONG\r\n")
        }
    }

    /// Why `subject` cannot be sent as a subject (or queue group), or nil when it can: it must not be empty
    /// nor hold white space or control characters.
    static func subjectProblem(_ subject: String) -> String? {
        if subject.isEmpty { return "a subject must not be empty" }
        if subject.utf8.contains(where: { $0 <= 32 || $0 == 127 }) { return "subject '\(subject)' holds white space or a control character" }
        return nil
    }
}
