import FuzzSupport
import HTTPDifferential

/// Any bytes as one connection's stream, cut into reads: `SnapshotFastPath`'s reading
/// (`RequestFraming`, answering every snapshot request it may) against NIO's `HTTPRequestDecoder`
/// alone, through `HTTPDifferential`: the same request boundaries, the same heads and bodies, and a
/// request answered by the fast path only where NIO reads that same GET. Traps (on purpose) at the
/// first disagreement, with both readings.
///
/// Input: a byte n (0 to 7), n bytes each giving a read's size (1 to 256), then the stream.
func check(_ bytes: [UInt8]) {
    var input = FuzzInput(bytes)
    let reads = (0..<input.number(below: 8)).map { _ in Int(input.byte()) + 1 }
    let stream = input.rest()
    if let disagreement = HTTPDifferential.compare(stream, chunks: reads, reusing: decoders) {
        fatalError("\(disagreement)\nstream: \(String(decoding: stream, as: UTF8.self).debugDescription), reads \(reads)")
    }
}

/// One pair of decoders for every input, reset before each (`HTTPDifferential.Decoder.reset`): making
/// and finishing two `EmbeddedChannel`s was most of an input's cost.
nonisolated(unsafe) let decoders = (reference: HTTPDifferential.Decoder(), codec: HTTPDifferential.Decoder())

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() { FuzzRunner.main(fuzzHTTP, check) }
}
