import Crypto
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

/// The data folder's erasure secret, `DATA/erasure.key`: 32 random bytes, mode 0600, created at the
/// first erasure. An erasure record names its user by HMAC-SHA256(secret, user id), never by the id: the
/// same user gives the same name (so a rerun finds what it continues), and without the secret the name
/// cannot be checked against guessed ids.
public struct ErasureKey: Sendable {
    public static let fileName = "erasure.key"
    private let key: SymmetricKey

    /// The key of the data folder at `data`, or nil when no erasure ever made one.
    public static func load(data: String) throws -> ErasureKey? {
        let path = data + "/" + fileName
        guard FileSystem.exists(path) else { return nil }
        let bytes = try File.openForReading(path).readAll()
        guard bytes.count == 32 else {
            throw LogError(.corrupt, "\(path) holds \(bytes.count) bytes, not the 32 of an erasure key; erasure records cannot be matched to users without it")
        }
        return ErasureKey(key: SymmetricKey(data: bytes))
    }

    /// The key, created (random, mode 0600, written atomically and fsynced) when there is none yet.
    /// The caller holds the data directory's lock.
    public static func loadOrCreate(data: String) throws -> ErasureKey {
        if let key = try load(data: data) { return key }
        let fresh = SymmetricKey(size: .bits256)
        let bytes = fresh.withUnsafeBytes { Array($0) }
        let path = data + "/" + fileName, temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ioError("create", temporary) }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw ioError("write", temporary) }
        guard fchmod(fd, 0o600) == 0 else { throw ioError("chmod", temporary) }
        guard fsync(fd) == 0 else { throw ioError("fsync", temporary) }
        try FileSystem.rename(temporary, to: path)
        try FileSystem.syncDirectory(data)
        return ErasureKey(key: fresh)
    }

    /// The name an erasure record gives `user`: HMAC-SHA256 under this key, 64 lowercase hex digits.
    public func name(of user: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array(user.utf8), using: key)
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in code { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

private func ioError(_ operation: String, _ path: String) -> LogError {
    let code = errno
    return LogError(.io, "\(operation) '\(path)' failed: \(String(cString: strerror(code))) (errno \(code))")
}
