/// Writes presence events as NDJSON lines, the same schema `NDJSONEventParser` reads.
public enum EventJSON {
    /// Appends one line (with its newline) for an event to `out`. With `offset`, an `"offset"` field comes first.
    public static func append(_ event: PresenceEvent, offset: Int64? = nil, to out: inout [UInt8]) {
        out.append(123)
        if let offset {
            out.append(contentsOf: "\"offset\":".utf8)
            out.append(contentsOf: String(offset).utf8)
            out.append(44)
        }
        out.append(contentsOf: "\"type\":\"".utf8)
        out.append(contentsOf: event.kind.name.utf8)
        out.append(34)
        if !event.kind.isGatewayEvent {
            out.append(contentsOf: ",\"user\":".utf8)
            appendString(event.user, to: &out)
            out.append(contentsOf: ",\"conn\":".utf8)
            appendString(event.conn, to: &out)
        }
        out.append(contentsOf: ",\"gateway\":".utf8)
        appendString(event.gateway, to: &out)
        out.append(contentsOf: ",\"ts\":\"".utf8)
        Timestamp.append(event.timestamp, to: &out)
        out.append(34)
        if let id = event.id {
            out.append(contentsOf: ",\"id\":".utf8)
            appendString(id, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    /// The line for `event`, without its newline.
    public static func line(_ event: PresenceEvent, offset: Int64? = nil) -> String {
        var bytes: [UInt8] = []
        append(event, offset: offset, to: &bytes)
        bytes.removeLast()
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `text` as a JSON string literal.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        // Most strings need no escape: copy them whole.
        let plain = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == 34 || $0 == 92 }) else { return false }
            out.append(34)
            out.append(contentsOf: bytes)
            out.append(34)
            return true
        }
        if plain == true { return }
        out.append(34)
        for byte in text.utf8 {
            switch byte {
            case 34: out.append(contentsOf: [92, 34])
            case 92: out.append(contentsOf: [92, 92])
            case 10: out.append(contentsOf: [92, 110])
            case 13: out.append(contentsOf: [92, 114])
            case 9: out.append(contentsOf: [92, 116])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, 117, 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(34)
    }
}
