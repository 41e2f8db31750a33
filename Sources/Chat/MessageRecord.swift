import Foundation
import Presence

/// A record of the messages log: its value, a small JSON object with its keys in sorted order.
///
///     {"by":"alice","members":["alice","bob"],"type":"created"}
///     {"client_id":"m-17","content":"hey","sender":"alice","type":"message"}     ("client_id" only when given)
///
/// The key is the conversation id; the timestamp the server's time of the request (ms). Logs written
/// before this type existed hold the same objects (written by `JSONEncoder` with sorted keys), and a
/// value from a newer build with more fields still reads: `parse` takes the common form by hand and
/// hands anything else (unknown fields, numbers, nesting) to `JSONDecoder`.
enum MessageRecord: Equatable {
    case created(members: [String], by: String?)
    case message(sender: String, content: String, clientID: String?)

    /// The value of a `created` record.
    static func encodeCreated(members: [String], by creator: String) -> [UInt8] {
        var out: [UInt8] = Array("{\"by\":".utf8)
        EventJSON.appendString(creator, to: &out)
        out.append(contentsOf: ",\"members\":[".utf8)
        for (index, member) in members.enumerated() {
            if index > 0 { out.append(44) }
            EventJSON.appendString(member, to: &out)
        }
        out.append(contentsOf: "],\"type\":\"created\"}".utf8)
        return out
    }

    /// The value of a `message` record.
    static func encodeMessage(sender: String, content: String, clientID: String?) -> [UInt8] {
        var out: [UInt8] = [123]
        out.reserveCapacity(content.utf8.count + sender.utf8.count + 64)
        if let clientID {
            out.append(contentsOf: "\"client_id\":".utf8)
            EventJSON.appendString(clientID, to: &out)
            out.append(44)
        }
        out.append(contentsOf: "\"content\":".utf8)
        EventJSON.appendString(content, to: &out)
        out.append(contentsOf: ",\"sender\":".utf8)
        EventJSON.appendString(sender, to: &out)
        out.append(contentsOf: ",\"type\":\"message\"}".utf8)
        return out
    }

    /// The record in `value`, or nil for one this build does not know (another type, missing fields,
    /// not JSON): such records are kept in the log and skipped.
    static func parse(_ value: UnsafeRawBufferPointer) -> MessageRecord? {
        var parser = FastParser(bytes: value)
        if let fields = parser.object() {
            return fields.record
        }
        // Anything the fast reader does not take (an unknown field holding a number or an object, odd
        // whitespace it does take, so mostly newer builds' fields) goes through Codable.
        guard let record = try? JSONDecoder().decode(Codable.self, from: Data(value)) else { return nil }
        switch record.type {
        case "created": return record.members.map { .created(members: $0, by: record.by) }
        case "message":
            guard let sender = record.sender, let content = record.content else { return nil }
            return .message(sender: sender, content: content, clientID: record.clientID)
        default: return nil
        }
    }

    /// The Codable form, for values the fast reader leaves (cold path).
    struct Codable: Decodable {
        var type: String
        var members: [String]?
        var by: String?
        var sender: String?
        var content: String?
        var clientID: String?
        enum CodingKeys: String, CodingKey { case type, members, by, sender, content, clientID = "client_id" }
    }

    /// The fields the fast reader found.
    struct Fields {
        var type: String?
        var members: [String]?
        var by: String?
        var sender: String?
        var content: String?
        var clientID: String?

        var record: MessageRecord? {
            switch type {
            case "created": return members.map { .created(members: $0, by: by) }
            case "message":
                guard let sender, let content else { return nil }
                return .message(sender: sender, content: content, clientID: clientID)
            default: return nil
            }
        }
    }

    /// A reader for objects whose values are strings or arrays of strings (every record this store writes).
    /// nil for anything else, and for invalid JSON; strings must be valid UTF-8.
    struct FastParser {
        let bytes: UnsafeRawBufferPointer
        var at = 0

        mutating func object() -> Fields? {
            var fields = Fields()
            skipSpace()
            guard take(123) else { return nil }
            skipSpace()
            if take(125) { return end() ? fields : nil }
            while true {
                skipSpace()
                guard let key = string() else { return nil }
                skipSpace()
                guard take(58) else { return nil }
                skipSpace()
                switch key {
                case "members":
                    guard fields.members == nil, let list = strings() else { return nil }
                    fields.members = list
                default:
                    guard let value = string() else { return nil }
                    switch key {
                    case "type": guard fields.type == nil else { return nil }; fields.type = value
                    case "by": guard fields.by == nil else { return nil }; fields.by = value
                    case "sender": guard fields.sender == nil else { return nil }; fields.sender = value
                    case "content": guard fields.content == nil else { return nil }; fields.content = value
                    case "client_id": guard fields.clientID == nil else { return nil }; fields.clientID = value
                    default: break  // a newer build's string field: kept in the log, not needed here
                    }
                }
                skipSpace()
                if take(44) { continue }
                guard take(125) else { return nil }
                return end() ? fields : nil
            }
        }

        private mutating func end() -> Bool {
            skipSpace()
            return at == bytes.count
        }

        private mutating func strings() -> [String]? {
            guard take(91) else { return nil }
            var list: [String] = []
            skipSpace()
            if take(93) { return list }
            while true {
                skipSpace()
                guard let item = string() else { return nil }
                list.append(item)
                skipSpace()
                if take(44) { continue }
                return take(93) ? list : nil
            }
        }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard at < bytes.count, bytes[at] == byte else { return false }
            at += 1
            return true
        }

        private mutating func skipSpace() {
            while at < bytes.count, bytes[at] == 32 || bytes[at] == 10 || bytes[at] == 13 || bytes[at] == 9 { at += 1 }
        }

        /// A JSON string; the plain case (no escapes) is one copy.
        private mutating func string() -> String? {
            guard take(34) else { return nil }
            let start = at
            while at < bytes.count {
                let byte = bytes[at]
                if byte == 34 {
                    let text = UnsafeRawBufferPointer(rebasing: bytes[start..<at])
                    at += 1
                    return Self.utf8(text)
                }
                if byte == 92 || byte < 0x20 { break }
                at += 1
            }
            // Escapes: decode into a buffer.
            var out = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<at]))
            while at < bytes.count {
                let byte = bytes[at]
                at += 1
                switch byte {
                case 34:
                    return out.withUnsafeBytes { Self.utf8($0) }
                case 92:
                    guard at < bytes.count else { return nil }
                    let escape = bytes[at]
                    at += 1
                    switch escape {
                    case 34, 92, 47: out.append(escape)
                    case 98: out.append(8)
                    case 102: out.append(12)
                    case 110: out.append(10)
                    case 114: out.append(13)
                    case 116: out.append(9)
                    case 117:
                        guard var scalar = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard take(92), take(117), let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00..<0xE000).contains(scalar) {
                            return nil
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { return nil }
                        out.append(contentsOf: String(Character(unicode)).utf8)
                    default:
                        return nil
                    }
                default:
                    guard byte >= 0x20 else { return nil }
                    out.append(byte)
                }
            }
            return nil
        }

        private mutating func hex4() -> UInt32? {
            guard bytes.count - at >= 4 else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[at]
                at += 1
                let digit: UInt8
                switch byte {
                case 48...57: digit = byte - 48
                case 65...70: digit = byte - 55
                case 97...102: digit = byte - 87
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            return value
        }

        /// The bytes as a String when they are valid UTF-8 (as `JSONDecoder` requires), else nil.
        private static func utf8(_ bytes: UnsafeRawBufferPointer) -> String? {
            String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self)
        }
    }
}

/// FNV-1a over bytes, finished with fmix64: a hash that is the same in every process (Swift's `Hasher`
/// is seeded per process), for fingerprints kept in checkpoints.
struct StableHash {
    private(set) var state: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes { state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    }

    mutating func add(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { add($0) }
    }

    var value: UInt64 {
        var h = state
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h = h &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}
