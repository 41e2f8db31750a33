import FuzzSupport
import Presence
import SegmentLog

/// The NDJSON event parser, differentially: any line gets the same verdict, and when valid the same
/// event, from the canonical fast path and from the general scanner (a leading space sends a line
/// around the fast path, which only reads lines starting with `{"type":"`); a valid event encodes to
/// a record that decodes back to it (`EventCodec`), and every refusal has a reason.
/// Traps (on purpose) at the first disagreement.
nonisolated(unsafe) let parser = NDJSONEventParser()

func check(_ line: [UInt8]) {
    // The leading space makes the general scanner's line one byte longer: keep both under the limit.
    guard line.count < PresenceEvent.Limits.lineBytes else { return }
    let fast = line.withUnsafeBytes { raw in Result { () throws(EventParseError) in try parser.parse(raw) } }
    let general = ([32] + line).withUnsafeBytes { raw in Result { () throws(EventParseError) in try parser.parse(raw) } }
    switch (fast, general) {
    case (.success(let a), .success(let b)):
        guard a == b else { fatalError("the fast path read \(a), the scanner \(b), from \(String(decoding: line, as: UTF8.self))") }
        roundTrip(line, a)
    case (.failure(let error), .failure):
        guard !error.reason.isEmpty else { fatalError("a refusal without a reason") }
    case (.success(let event), .failure(let error)):
        fatalError("the fast path read \(event), the scanner refused it (\(error)): \(String(decoding: line, as: UTF8.self))")
    case (.failure(let error), .success(let event)):
        fatalError("the fast path refused (\(error)) what the scanner read as \(event): \(String(decoding: line, as: UTF8.self))")
    }
}

/// The record `append` writes for a valid line decodes back to the event `parse` read.
func roundTrip(_ line: [UInt8], _ event: PresenceEvent) {
    var buffer = RecordBuffer()
    let appended = line.withUnsafeBytes { raw in Result { () throws(EventParseError) in try parser.append(raw, to: &buffer) } }
    if case .failure(let error) = appended { fatalError("parse read \(event) but append refused the line: \(error)") }
    let key = buffer.key(at: 0), value = buffer.value(at: 0)
    let decoded = key.withOptionalBytes { key in
        value.withUnsafeBytes { value in
            Result { () throws(EventCodec.DecodeError) in try EventCodec.decode(key: key, value: value, timestamp: buffer.timestamp(at: 0)) }
        }
    }
    guard case .success(let back) = decoded, back == event else {
        fatalError("\(event) was encoded into a record that decodes to \(decoded)")
    }
}

extension Optional where Wrapped == [UInt8] {
    func withOptionalBytes<R>(_ body: (UnsafeRawBufferPointer?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case .some(let bytes): return bytes.withUnsafeBytes { body($0) }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNDJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() { FuzzRunner.main(fuzzNDJSON, check) }
}
