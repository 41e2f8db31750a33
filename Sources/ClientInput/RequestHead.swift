import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A request head read from raw bytes, as far as `SnapshotFastPath` needs it.
package struct RequestHead {
    /// Where the snapshot route's targets start.
    package static let snapshotPrefix: StaticString = "/v1/conversations/"

    /// A `GET /v1/conversations/{id}[?after_seq=N|before_seq=N][&limit=N]` target, with a plain id
    /// (nothing to decode).
    package struct SnapshotTarget: Equatable {
        package var id: String
        package var afterSeq: String?
        package var beforeSeq: String?
        package var limit: String?
    }

    /// Bytes of the head, CRLF CRLF included.
    package var size: Int
    /// Set for a GET of a conversation snapshot.
    package var snapshot: SnapshotTarget?
    /// The conversation id of a `POST /v1/conversations/{id}/messages` with a plain id and no query.
    package var postMessageTo: String?
    /// Where the token of the one `Authorization: Bearer` header is, from the head's first byte.
    package var bearerToken: Range<Int>?
    package var contentLength: Int
    /// The request asks for a WebSocket (`Upgrade: websocket`): its handshake headers.
    package var webSocket: WebSocketHandshake?
    /// The request is the codec's for good (`Connection`, or an upgrade): it takes the connection.
    package var handsOver = false

    /// What a WebSocket upgrade request says of its handshake. NIO's upgrader refuses a missing key or a
    /// version other than 13 by closing the connection without a word, and takes any key; checked here
    /// first, such a request gets an answer (RFC 6455, 4.2.1 and 4.4).
    package struct WebSocketHandshake {
        /// The one `Sec-WebSocket-Key` and `Sec-WebSocket-Version` values (nil: missing or repeated).
        package var key: String?
        package var version: String?

        package var refusal: RequestFraming.Refusal? {
            guard version == "13" else {
                return .init(status: "426 Upgrade Required", code: "upgrade_required",
                             message: "this server speaks WebSocket version 13: send one Sec-WebSocket-Version: 13",
                             headers: "Sec-WebSocket-Version: 13\r\n")
            }
            guard let key, Self.isKey(key) else {
                return .init(status: "400 Bad Request", code: "bad_request",
                             message: "Sec-WebSocket-Key must be one header holding 16 random bytes in base64 (24 characters ending in ==)")
            }
            return nil
        }

        /// 16 bytes in base64: 22 characters of the alphabet, then "==".
        package static func isKey(_ key: String) -> Bool {
            let bytes = Array(key.utf8)
            guard bytes.count == 24, bytes[22] == 61, bytes[23] == 61 else { return false }
            return bytes[..<22].allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 43 || $0 == 47 }
        }
    }

    package enum Parse {
        case complete(RequestHead)
        /// No CRLF CRLF yet, and nothing wrong so far.
        case incomplete
        /// Not a request this handler can delimit or answer: the codec takes over.
        case notForUs
    }

    /// Reads the head at the start of `raw`, in one pass over its bytes (at most `maxHeadBytes` of them).
    package static func parse(_ raw: UnsafeRawBufferPointer, maxHeadBytes: Int = RequestFraming.defaultMaxHeadBytes) -> Parse {
        guard let base = raw.baseAddress else { return .incomplete }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let count = min(raw.count, maxHeadBytes)
        var head = RequestHead(size: 0, snapshot: nil, bearerToken: nil, contentLength: 0)
        var sawLength = false, authorizations = 0
        var upgrade = false
        var connectionUpgrade = false
        var keys: [String] = [], versions: [String] = []
        var lineStart = 0
        var isFirstLine = true
        while lineStart < count {
            guard let found = memchr(bytes + lineStart, 10, count - lineStart) else { return .incomplete }
            let lf = UnsafeRawPointer(found) - UnsafeRawPointer(bytes)
            // Every LF must end a CRLF.
            guard lf > lineStart, bytes[lf - 1] == 13 else { return .notForUs }
            let line = lineStart..<(lf - 1)
            lineStart = lf + 1
            if line.isEmpty {
                guard !isFirstLine else { return .notForUs }  // a blank line before the request line
                if authorizations != 1 { head.bearerToken = nil }
                if upgrade {
                    // An upgrade only with `Connection: upgrade`, as NIO's upgrader reads it; without, the
                    // request is an ordinary one for the codec and the route.
                    if connectionUpgrade {
                        head.webSocket = WebSocketHandshake(key: keys.count == 1 ? keys[0] : nil, version: versions.count == 1 ? versions[0] : nil)
                    }
                    head.handsOver = true
                }
                head.size = lineStart
                return .complete(head)
            }
            if isFirstLine {
                isFirstLine = false
                guard readRequestLine(bytes, line, into: &head) else { return .notForUs }
                continue
            }
            // A header: token ":" value, no control bytes but HT (so no folding, no bare CR).
            var colon = line.lowerBound
            while colon < line.upperBound && isTokenByte(bytes[colon]) { colon += 1 }
            guard colon > line.lowerBound, colon < line.upperBound, bytes[colon] == 58 else { return .notForUs }
            var valueStart = colon + 1, valueEnd = line.upperBound
            for index in valueStart..<valueEnd where (bytes[index] < 32 && bytes[index] != 9) || bytes[index] == 127 {
                return .notForUs
            }
            while valueStart < valueEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            let name = line.lowerBound..<colon
            func value() -> String { String(decoding: UnsafeBufferPointer(start: bytes + valueStart, count: valueEnd - valueStart), as: UTF8.self) }
            if nameIs(bytes, name, "transfer-encoding") || nameIs(bytes, name, "expect") || nameIs(bytes, name, "te") {
                return .notForUs
            } else if nameIs(bytes, name, "upgrade") {
                // Only a WebSocket upgrade is looked at; anything else is the codec's to judge, and so is
                // a handshake header with whitespace after its value (NIO keeps it as part of the value).
                guard value().lowercased() == "websocket", valueEnd == line.upperBound else { return .notForUs }
                upgrade = true
            } else if nameIs(bytes, name, "connection") || nameIs(bytes, name, "proxy-connection") {
                // llhttp reads Proxy-Connection as Connection.
                // llhttp allows only spaces after a token ("upgrade<TAB>" is no upgrade to it): a tab
                // after the value's start is the codec's to judge.
                guard !(valueStart..<line.upperBound).contains(where: { bytes[$0] == 9 }) else { return .notForUs }
                head.handsOver = true
                if value().lowercased().split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "upgrade" }) {
                    connectionUpgrade = true
                }
            } else if nameIs(bytes, name, "sec-websocket-key") {
                guard valueEnd == line.upperBound else { return .notForUs }
                keys.append(value())
            } else if nameIs(bytes, name, "sec-websocket-version") {
                guard valueEnd == line.upperBound else { return .notForUs }
                versions.append(value())
            } else if nameIs(bytes, name, "content-length") {
                let digits = valueStart..<valueEnd
                // After the digits llhttp allows spaces only: a tab there is its "invalid Content-Length".
                guard !sawLength, !digits.isEmpty, digits.allSatisfy({ bytes[$0] >= 48 && bytes[$0] <= 57 }),
                      !(valueEnd..<line.upperBound).contains(where: { bytes[$0] == 9 })
                else { return .notForUs }
                sawLength = true
                // Leading zeros count for nothing (llhttp reads 007 as 7); past 18 significant digits
                // it would not fit an Int: over any limit anyway.
                let significant = (digits.first { bytes[$0] != 48 } ?? valueEnd)..<valueEnd
                head.contentLength = significant.count > 18 ? .max : significant.reduce(0) { $0 * 10 + Int(bytes[$1] - 48) }
            } else if nameIs(bytes, name, "authorization") {
                authorizations += 1
                let prefix: StaticString = "Bearer "
                if valueEnd - valueStart > prefix.utf8CodeUnitCount, memcmp(bytes + valueStart, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0 {
                    head.bearerToken = (valueStart + prefix.utf8CodeUnitCount)..<valueEnd
                }
            }
        }
        return .incomplete
    }

    package enum KeepAlive {
        /// The request line is not HTTP/1.0's.
        case notHTTP10
        /// An HTTP/1.0 head whose end has not come yet (and nothing in it the codec would refuse).
        case incomplete
        /// The head's Connection header has the `keep-alive` token.
        case keepsAlive
        /// It has not: the request is its connection's last.
        case closes
    }

    /// Whether `raw` starts with an HTTP/1.0 request, and whether that request keeps the connection
    /// alive as NIO's decoder reads it (llhttp: a `keep-alive` token, in any case, among the comma
    /// separated values of any Connection or Proxy-Connection header (llhttp reads them alike), with
    /// spaces or tabs before it and only spaces after
    /// it: "keep-alive<TAB>" is another token). Undecided until the head's blank line has come,
    /// unless a line ends in a bare LF or the head is past `maxHeadBytes` (the codec refuses those).
    /// Empty lines before the request line are skipped, as llhttp skips every CR and LF there.
    package static func http10KeepAlive(_ raw: UnsafeRawBufferPointer, maxHeadBytes: Int = RequestFraming.defaultMaxHeadBytes) -> KeepAlive {
        let head = raw.prefix(maxHeadBytes)
        guard let requestStart = head.firstIndex(where: { $0 != 13 && $0 != 10 }),
              let firstLF = head[requestStart...].firstIndex(of: 10)
        else { return raw.count > maxHeadBytes ? .notHTTP10 : .incomplete }
        let requestLine = head[requestStart..<firstLF]
        guard requestLine.last == 13, requestLine.dropLast().reversed().starts(with: " HTTP/1.0".utf8.reversed()) else { return .notHTTP10 }
        var keepAlive = false
        var lineStart = firstLF + 1
        while true {
            guard let lf = head[lineStart...].firstIndex(of: 10) else { return raw.count > maxHeadBytes ? .closes : .incomplete }
            guard lf > lineStart, head[lf - 1] == 13 else { return keepAlive ? .keepsAlive : .closes }  // a bare LF
            let line = head[lineStart..<(lf - 1)]
            if line.isEmpty { return keepAlive ? .keepsAlive : .closes }
            if let colon = line.firstIndex(of: 58),
               equalsIgnoringCase(line[..<colon], "connection") || equalsIgnoringCase(line[..<colon], "proxy-connection") {
                for token in line[(colon + 1)...].split(separator: 44) {
                    let trimmed = token.drop { $0 == 32 || $0 == 9 }.reversed().drop { $0 == 32 }.reversed()
                    if equalsIgnoringCase(trimmed, "keep-alive") { keepAlive = true }
                }
            }
            lineStart = lf + 1
        }
    }

    /// Whether `bytes` spell `lowercase` (lowercase letters and punctuation) with letters in any case.
    private static func equalsIgnoringCase(_ bytes: some Collection<UInt8>, _ lowercase: String) -> Bool {
        bytes.count == lowercase.utf8.count && zip(bytes, lowercase.utf8).allSatisfy { ($0 >= 65 && $0 <= 90 ? $0 + 32 : $0) == $1 }
    }

    /// `METHOD SP target SP HTTP/1.1`, printable ASCII, an origin-form target.
    private static func readRequestLine(_ bytes: UnsafePointer<UInt8>, _ line: Range<Int>, into head: inout RequestHead) -> Bool {
        var methodEnd = line.lowerBound
        while methodEnd < line.upperBound && isTokenByte(bytes[methodEnd]) { methodEnd += 1 }
        guard methodEnd > line.lowerBound, methodEnd < line.upperBound, bytes[methodEnd] == 32 else { return false }
        let targetStart = methodEnd + 1
        var targetEnd = targetStart
        while targetEnd < line.upperBound && bytes[targetEnd] > 32 && bytes[targetEnd] < 127 { targetEnd += 1 }
        let version: StaticString = " HTTP/1.1"
        guard targetEnd > targetStart, bytes[targetStart] == 47, line.upperBound - targetEnd == version.utf8CodeUnitCount,
              memcmp(bytes + targetEnd, version.utf8Start, version.utf8CodeUnitCount) == 0
        else { return false }
        let isGet = methodEnd - line.lowerBound == 3 && bytes[line.lowerBound] == 71 && bytes[line.lowerBound + 1] == 69
            && bytes[line.lowerBound + 2] == 84
        if isGet { head.snapshot = snapshotTarget(bytes, targetStart..<targetEnd) }
        let isPost = methodEnd - line.lowerBound == 4 && memcmp(bytes + line.lowerBound, "POST", 4) == 0
        if isPost { head.postMessageTo = postTarget(bytes, targetStart..<targetEnd) }
        return true
    }

    /// The conversation a `/v1/conversations/{id}/messages` target posts to, or nil for any other target
    /// (or one with something to decode, or a query: the route handles those).
    private static func postTarget(_ bytes: UnsafePointer<UInt8>, _ target: Range<Int>) -> String? {
        let prefix = Self.snapshotPrefix
        let suffix: StaticString = "/messages"
        guard target.count > prefix.utf8CodeUnitCount + suffix.utf8CodeUnitCount,
              memcmp(bytes + target.lowerBound, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0,
              memcmp(bytes + target.upperBound - suffix.utf8CodeUnitCount, suffix.utf8Start, suffix.utf8CodeUnitCount) == 0
        else { return nil }
        let id = (target.lowerBound + prefix.utf8CodeUnitCount)..<(target.upperBound - suffix.utf8CodeUnitCount)
        for index in id {
            switch bytes[index] {
            case 47, 37, 43, 35, 63: return nil  // '/', '%', '+', '#', '?'
            default: continue
            }
        }
        return String(decoding: UnsafeBufferPointer(start: bytes + id.lowerBound, count: id.count), as: UTF8.self)
    }

    /// The snapshot a target asks for, or nil for any other target (or one with something to decode:
    /// the route handles those).
    private static func snapshotTarget(_ bytes: UnsafePointer<UInt8>, _ target: Range<Int>) -> SnapshotTarget? {
        let prefix = Self.snapshotPrefix
        guard target.count > prefix.utf8CodeUnitCount, memcmp(bytes + target.lowerBound, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
        else { return nil }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(start: bytes + range.lowerBound, count: range.count), as: UTF8.self)
        }
        let idStart = target.lowerBound + prefix.utf8CodeUnitCount
        var idEnd = idStart
        while idEnd < target.upperBound && bytes[idEnd] != 63 {  // '?'
            switch bytes[idEnd] {
            case 47, 37, 43, 35: return nil  // '/', '%', '+', '#'
            default: idEnd += 1
            }
        }
        guard idEnd > idStart else { return nil }
        var result = SnapshotTarget(id: text(idStart..<idEnd), afterSeq: nil, beforeSeq: nil, limit: nil)
        var pairStart = idEnd + 1
        while pairStart < target.upperBound {
            var pairEnd = pairStart
            while pairEnd < target.upperBound && bytes[pairEnd] != 38 { pairEnd += 1 }  // '&'
            guard let equals = (pairStart..<pairEnd).first(where: { bytes[$0] == 61 }) else { return nil }
            let value = text((equals + 1)..<pairEnd)
            // A parameter given twice is the route's: it reads the first, and so must every answer.
            if equals - pairStart == 9 && memcmp(bytes + pairStart, "after_seq", 9) == 0 && result.afterSeq == nil {
                result.afterSeq = value
            } else if equals - pairStart == 10 && memcmp(bytes + pairStart, "before_seq", 10) == 0 && result.beforeSeq == nil {
                result.beforeSeq = value
            } else if equals - pairStart == 5 && memcmp(bytes + pairStart, "limit", 5) == 0 && result.limit == nil {
                result.limit = value
            } else {
                return nil
            }
            pairStart = pairEnd + 1
        }
        return result
    }

    /// Whether the header name at `range` is `expected` (lowercase letters and '-'), in any case.
    @inline(__always)
    private static func nameIs(_ bytes: UnsafePointer<UInt8>, _ range: Range<Int>, _ expected: StaticString) -> Bool {
        guard expected.utf8CodeUnitCount == range.count else { return false }
        let letters = expected.utf8Start
        // Token bytes only: `| 0x20` folds letters to lowercase and leaves '-' as it is.
        for offset in 0..<range.count where bytes[range.lowerBound + offset] | 0x20 != letters[offset] { return false }
        return true
    }

    /// RFC 9110 token characters.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: return true
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: return true
        default: return false
        }
    }
}
