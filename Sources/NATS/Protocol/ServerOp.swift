import Foundation
import NIOCore

/// An operation the server sends. Every one is a control line ending in CRLF; MSG and HMSG are followed by
/// a body of the announced length and a CRLF:
///
/// ```
/// INFO {"server_id":...}␍␊
/// MSG <subject> <sid> [reply-to] <#bytes>␍␊<payload>␍␊
/// HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>␍␊<headers><payload>␍␊
/// PING␍␊ / PONG␍␊ / +OK␍␊ / -ERR '<text>'␍␊
/// ```
///
/// Operation names are matched without regard to case. ``NATSParser`` cuts a byte stream into these.
public enum ServerOp: Sendable, Equatable {
    case info(ServerInfo)
    /// MSG or HMSG (the message has ``NATSMessage/headerBytes`` for HMSG).
    case msg(NATSMessage)
    case ping
    case pong
    case ok
    /// `-ERR` with the server's text, quotes removed.
    case err(String)
}


/// The control line of MSG or HMSG: what the body that follows is.
struct MessageHead: Sendable {
    var subject: ByteBuffer
    var sid: UInt64
    var reply: ByteBuffer?
    /// The length of the header block (HMSG), nil for MSG.
    var headerLength: Int?
    /// Header block and payload together.
    var totalLength: Int

    func message(body: ByteBuffer) -> NATSMessage? {
        guard let headerLength else {
            return NATSMessage(subject: subject, sid: sid, reply: reply, headers: nil, payload: body)
        }
        guard let headers = body.getSlice(at: body.readerIndex, length: headerLength),
              let payload = body.getSlice(at: body.readerIndex + headerLength, length: totalLength - headerLength)
        else { return nil }
        return NATSMessage(subject: subject, sid: sid, reply: reply, headers: headers, payload: payload)
    }
}

extension ServerOp {
    /// What one control line (without its CRLF) says: an operation complete in itself, or the head of a
    /// message whose body follows.
    enum ControlLine {
        case op(ServerOp)
        case messageHead(MessageHead)
    }

    /// Parses the control line held in `source` at `start` (an absolute index) with `bytes` its bytes.
    /// Subjects are slices of `source`, so nothing is copied.
    static func parseControlLine(_ bytes: UnsafeRawBufferPointer, in source: ByteBuffer, at start: Int, maxPayload: Int) throws -> ControlLine {
        var length = bytes.count
        if length > 0, bytes[length - 1] == 13 { length -= 1 }
        var opEnd = 0
        while opEnd < length, bytes[opEnd] != 32, bytes[opEnd] != 9 { opEnd += 1 }

        switch opKey(bytes, opEnd) {
        case OpKey.msg, OpKey.hmsg:
            let hasHeaders = opEnd == 4
            return try withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 6) { tokens in
                let count = try tokenize(bytes, from: opEnd, to: length, into: tokens, line: bytes)
                let expected = hasHeaders ? (4...5) : (3...4)
                guard expected.contains(count) else {
                    throw protocolError("\(hasHeaders ? "HMSG" : "MSG") needs \(expected.lowerBound) or \(expected.upperBound) arguments", bytes)
                }
                let hasReply = count == expected.upperBound
                func slice(_ token: Range<Int>) throws -> ByteBuffer {
                    guard let slice = source.getSlice(at: start + token.lowerBound, length: token.count) else {
                        throw protocolError("argument outside the line", bytes)
                    }
                    return slice
                }
                let subject = try slice(tokens[0])
                let sid = try number(bytes, tokens[1], what: "sid")
                let reply = hasReply ? try slice(tokens[2]) : nil
                let sizes = hasReply ? 3 : 2
                let total = try number(bytes, tokens[count - 1], what: "size")
                var headerLength: Int?
                if hasHeaders {
                    let header = try number(bytes, tokens[sizes], what: "header size")
                    guard header <= total else { throw protocolError("header size larger than the total size", bytes) }
                    headerLength = Int(header)
                }
                guard total <= UInt64(maxPayload) else {
                    throw protocolError("message of \(total) bytes, larger than the \(maxPayload) allowed", bytes)
                }
                return .messageHead(MessageHead(subject: subject, sid: sid, reply: reply, headerLength: headerLength, totalLength: Int(total)))
            }
        case OpKey.ping:
            return .op(.ping)
        case OpKey.pong:
            return .op(.pong)
        case OpKey.ok:
            return .op(.ok)
        case OpKey.err:
            var text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[opEnd..<length]), as: UTF8.self)
            text = text.trimmingCharacters(in: .whitespaces)
            if text.count >= 2, text.hasPrefix("'"), text.hasSuffix("'") { text = String(text.dropFirst().dropLast()) }
            return .op(.err(text))
        case OpKey.info:
            let json = Data(UnsafeRawBufferPointer(rebasing: bytes[opEnd..<length]))
            do {
                return .op(.info(try JSONDecoder().decode(ServerInfo.self, from: json)))
            } catch {
                throw protocolError("INFO is not the JSON expected (\(error))", bytes)
            }
        default:
            throw protocolError("unknown operation", bytes)
        }
    }

    /// Operation names of three or four bytes, upper case, packed big-endian into a word.
    private enum OpKey {
        static let msg: UInt32 = 0x4D_53_47  // "MSG"
        static let hmsg: UInt32 = 0x48_4D_53_47  // "HMSG"
        static let ping: UInt32 = 0x50_49_4E_47  // "PING"
        static let pong: UInt32 = 0x50_4F_4E_47  // "PONG"
        static let ok: UInt32 = 0x2B_4F_4B  // "+OK"
        static let err: UInt32 = 0x2D_45_52_52  // "-ERR"
        static let info: UInt32 = 0x49_4E_46_4F  // "INFO"
    }

    /// The operation's name upper-cased and packed into a word (0 for a name that is not 3 or 4 bytes long).
    private static func opKey(_ bytes: UnsafeRawBufferPointer, _ end: Int) -> UInt32 {
        guard end >= 3, end <= 4 else { return 0 }
        var key: UInt32 = 0
        for index in 0..<end {
            let byte = bytes[index]
            key = key << 8 | UInt32(byte >= 97 && byte <= 122 ? byte - 32 : byte)
        }
        return key
    }

    /// Splits the arguments after the operation at spaces and tabs; throws past six.
    private static func tokenize(_ bytes: UnsafeRawBufferPointer, from: Int, to end: Int, into tokens: UnsafeMutableBufferPointer<Range<Int>>, line: UnsafeRawBufferPointer) throws -> Int {
        var count = 0
        var index = from
        while index < end {
            while index < end, bytes[index] == 32 || bytes[index] == 9 { index += 1 }
            guard index < end else { break }
            let tokenStart = index
            while index < end, bytes[index] != 32, bytes[index] != 9 { index += 1 }
            guard count < tokens.count else { throw protocolError("too many arguments", line) }
            tokens.initializeElement(at: count, to: tokenStart..<index)
            count += 1
        }
        return count
    }

    /// A decimal argument; at most 18 digits, so it cannot overflow.
    private static func number(_ bytes: UnsafeRawBufferPointer, _ token: Range<Int>, what: String) throws -> UInt64 {
        guard !token.isEmpty, token.count <= 18 else { throw protocolError("\(what) is not a number", bytes) }
        var value: UInt64 = 0
        for index in token {
            let digit = bytes[index]
            guard digit >= 48, digit <= 57 else { throw protocolError("\(what) is not a number", bytes) }
            value = value &* 10 &+ UInt64(digit &- 48)  // 18 digits at most: below 10^18 < 2^63
        }
        return value
    }

    static func protocolError(_ what: String, _ line: UnsafeRawBufferPointer) -> NATSError {
        let shown = String(decoding: UnsafeRawBufferPointer(rebasing: line.prefix(120)), as: UTF8.self)
            .replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
        return NATSError(.protocolError, "\(what) in the server's line '\(shown)\(line.count > 120 ? "…" : "")'")
    }
}
