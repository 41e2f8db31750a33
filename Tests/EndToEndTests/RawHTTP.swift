import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One TCP connection to a server on 127.0.0.1, spoken byte for byte: for requests a URL client would
/// not send as they are (HTTP/1.0, raw paths) and to see whether the server closes the connection.
final class RawConnection {
    private let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawError("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw RawError("connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    private var open = true

    deinit { disconnect() }

    /// Closes the connection (a client going away without a word).
    func disconnect() {
        if open { close(fd) }
        open = false
    }

    func send(_ text: String) {
        _ = CLI.writeAll(fd, Data(text.utf8))
    }

    /// Reads until the server closes the connection (true) or `seconds` pass without it (false), and
    /// returns what was read.
    func readUntilClosed(seconds: Double = 10) -> (text: String, closed: Bool) {
        var received = Data()
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var shortWait = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &shortWait, socklen_t(MemoryLayout<timeval>.size))
        while Date() < deadline {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received.append(contentsOf: buffer[0..<n]); continue }
            if n == 0 { return (String(decoding: received, as: UTF8.self), true) }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
            return (String(decoding: received, as: UTF8.self), true)  // reset: closed too
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    /// Reads until what was read contains `text` or `seconds` pass; returns what was read.
    func read(until text: String, seconds: Double = 10) -> String {
        var received = Data()
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline, !String(decoding: received, as: UTF8.self).contains(text) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received.append(contentsOf: buffer[0..<n]) } else if n == 0 { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// A WebSocket handshake on `/v1/ws` with the token in the query (RFC 6455's sample key).
    static func webSocketUpgrade(token: String) -> String {
        "GET /v1/ws?token=\(token) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    /// Sends `request` and returns what comes back until the server closes the connection (or 10 s).
    func readAfterSending(_ request: String) -> String {
        send(request)
        return readUntilClosed(seconds: 10).text
    }

    /// Sends one request and reads one response (head and a body of its Content-Length).
    func exchange(_ request: String) -> (status: Int, head: String, body: String) {
        send(request)
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let end = received.range(of: Data("\r\n\r\n".utf8)) {
                let head = String(decoding: received[..<end.lowerBound], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if received.count - end.upperBound >= length {
                    let body = String(decoding: received[end.upperBound..<(end.upperBound + length)], as: UTF8.self)
                    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? -1
                    return (status, head, body)
                }
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return (-1, String(decoding: received, as: UTF8.self), "") }
            received.append(contentsOf: buffer[0..<n])
        }
    }
}

struct RawError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
