import CCRC32C
import FuzzSupport
import Foundation
import Presence
import Projector

/// Any bytes as a checkpoint file: `Checkpoint.load` gives a projection or an error, never a crash, a
/// hang or an allocation larger than the file can fill. A projection it gives is then read whole and
/// takes an event. The trailing CRC-32C is recomputed before the bytes are written (unless the input
/// is empty), so that mutations reach the decoder and the reference checks instead of stopping at
/// the checksum.
let path: String = {
    let folder = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 }
        ?? (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : "/tmp")
    atexit { try? FileManager.default.removeItem(atPath: path) }
    return folder + "/presence-fuzz-checkpoint-\(getpid()).ckpt"
}()

func check(_ bytes: [UInt8]) {
    var file = bytes
    if file.count >= 4 {
        let crc = file.withUnsafeBytes { presencelog_crc32c(0, $0.baseAddress, file.count - 4) }
        for i in 0..<4 { file[file.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
    }
    guard FileManager.default.createFile(atPath: path, contents: Data(file)) else { fatalError("cannot write \(path)") }
    guard let projection = try? Checkpoint.load(path) else { return }
    // A loaded projection is used as the server would: every user's state, one user's, the
    // gateways, and one more event.
    let states = projection.allStates()
    if let first = states.first { _ = projection.state(of: first.user) }
    _ = projection.state(of: "u1")
    for (gateway, _) in projection.gatewayHeartbeats() { _ = projection.openConnections(onGateway: gateway) }
    let time = max(projection.maxTimestamp, 0)
    projection.apply(PresenceEvent(kind: .connect, user: "u1", conn: "u1-phone-1", gateway: "gw-1", timestamp: time))
    projection.apply(PresenceEvent(kind: .disconnect, user: "u1", conn: "u1-phone-1", gateway: "gw-1", timestamp: time))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() { FuzzRunner.main(fuzzCheckpoint, check) }
}
