import Foundation
import JWTKit
import Presence

/// Who a bearer token speaks for.
public struct PresenceClaims: JWTPayload, Equatable {
    /// The user id (or the gateway's name, for gateway tokens).
    public var sub: SubjectClaim
    public var exp: ExpirationClaim
    /// "user", "gateway", "operator" or "admin".
    public var role: String

    public init(subject: String, expires: Date, role: Role) {
        self.sub = SubjectClaim(value: subject)
        self.exp = ExpirationClaim(value: expires)
        self.role = role.rawValue
    }

    /// A user (conversations, presence, the socket), a gateway (posts its own events), an operator
    /// (reads any user's history and past state, and the log's figures: the audit routes) or an admin
    /// (erases a user: `POST /v1/admin/forget`, and nothing else).
    public enum Role: String, Sendable { case user, gateway, `operator`, admin }

    public var isGateway: Bool { role == Role.gateway.rawValue }
    /// Whether the token is a user's: only those reach the conversation routes and the socket.
    public var isUser: Bool { role == Role.user.rawValue }
    public var isOperator: Bool { role == Role.operator.rawValue }
    public var isAdmin: Bool { role == Role.admin.rawValue }

    /// The longest subject: it becomes a user id (or a gateway name) in the log, 1 to 256 bytes.
    public static let maxSubjectBytes = PresenceEvent.Limits.userBytes

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        // A subject the log cannot hold would be refused by every later `ingest` of a dump.
        let bytes = sub.value.utf8.count
        guard bytes >= 1, bytes <= Self.maxSubjectBytes else { throw SubjectOutOfLimits(bytes: bytes) }
    }

    /// Why `subject` cannot be a token's subject, or nil when it can (`presence token` asks before minting).
    public static func subjectProblem(_ subject: String) -> String? {
        let bytes = subject.utf8.count
        guard bytes >= 1, bytes <= maxSubjectBytes else { return SubjectOutOfLimits(bytes: bytes).description }
        return nil
    }
}

/// A token's `sub` outside the ids' limits.
struct SubjectOutOfLimits: Error, CustomStringConvertible {
    let bytes: Int
    var description: String {
        "its subject (sub) is \(bytes) bytes; user ids and gateway names are 1 to \(PresenceClaims.maxSubjectBytes) bytes of UTF-8"
    }
}

/// A token whose header names an algorithm other than HS256.
struct ForeignAlgorithm: Error, CustomStringConvertible {
    let algorithm: String?
    var description: String {
        "the token's header names \(algorithm.map { "the algorithm '\($0)'" } ?? "no algorithm"): only HS256 tokens, as `presence token` prints, are accepted"
    }
}

/// Mints and checks HS256 tokens with one shared secret.
///
/// A token that verified is remembered until it expires, so a client's repeated requests cost a
/// dictionary lookup instead of an HMAC and a JSON decode each (the cache is bounded and emptied when
/// full; an entry is never used past the token's expiry).
public struct TokenAuthority: Sendable {
    let keys: JWTKeyCollection
    private let verified = VerifiedTokens()

    /// The secret every `--dev` server and `presence token --dev` share. Never for production.
    public static let developmentSecret = "presencelog-development-secret-do-not-use-in-production"

    public init(secret: String) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A signed token for `subject`, valid for `ttl` seconds.
    public func mint(subject: String, role: PresenceClaims.Role, ttl: TimeInterval) async throws -> String {
        try await keys.sign(PresenceClaims(subject: subject, expires: Date(timeIntervalSinceNow: ttl), role: role))
    }

    /// The claims of a token that verified before and has not expired, without verifying it again; nil
    /// when it is not in the cache (then `verify` decides).
    func cachedClaims(_ token: String) -> PresenceClaims? {
        verified.claims(for: token)
    }

    /// The claims of a valid, unexpired token; throws otherwise.
    public func verify(_ token: String) async throws -> PresenceClaims {
        if let claims = verified.claims(for: token) { return claims }
        try Self.checkAlgorithm(token)
        let claims = try await keys.verify(token, as: PresenceClaims.self)
        verified.remember(token, claims)
        return claims
    }

    /// Refuses a token whose header names another algorithm than HS256 (`none`, `RS256`, `HS512`, or
    /// none at all). jwt-kit verifies with the collection's only key whatever the header says, so such a
    /// token with an HS256 signature would pass; a token must say what it is (RFC 8725, 3.1). A header
    /// that is not base64url JSON is left to jwt-kit, which calls the token malformed.
    static func checkAlgorithm(_ token: String) throws {
        guard let dot = token.firstIndex(of: ".") else { return }
        var text = token[..<dot].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        guard let data = Data(base64Encoded: text), let header = try? JSONDecoder().decode(Header.self, from: data) else { return }
        guard header.algorithm == "HS256" else { throw ForeignAlgorithm(algorithm: header.algorithm) }
    }

    /// A token's header, as far as `checkAlgorithm` reads it: an `alg` that is missing or not a string
    /// reads as none (refused), never as a reason to skip the check.
    private struct Header: Decodable {
        let algorithm: String?

        enum CodingKeys: String, CodingKey { case algorithm = "alg" }

        init(from decoder: any Decoder) throws {
            let fields = try decoder.container(keyedBy: CodingKeys.self)
            algorithm = try? fields.decode(String.self, forKey: .algorithm)
        }
    }

    /// Why `verify` refused a token, in words a client's developer can act on (jwt-kit's own errors
    /// name its internals).
    public static func explain(_ error: any Error) -> String {
        if let error = error as? JWTError {
            switch error.errorType {
            case .malformedToken:
                return "the token is malformed: it must be three base64url parts joined by dots, as `presence token` prints"
            case .signatureVerificationFailed:
                return "the token's signature does not match: it was signed with another secret"
            case .claimVerificationFailure:
                return error.failedClaim is ExpirationClaim ? "the token has expired" : "a claim of the token failed: \(error.reason ?? "")"
            default:
                break
            }
        }
        if let error = error as? SubjectOutOfLimits { return "the token cannot be used: \(error.description)" }
        if let error = error as? ForeignAlgorithm { return error.description }
        if error is DecodingError { return "the token's payload is not a PresenceLog token (it needs sub, exp and role)" }
        return "\(error)"
    }

    /// The shortest secret accepted, from any source: HS256's hash output, 32 bytes. jwt-kit asserts it
    /// (in debug builds; a coming release makes it a precondition), and a shorter key is easier to guess.
    public static let minimumSecretBytes = 32

    /// Reads the token secret: `PRESENCE_TOKEN_SECRET`, else the file `secretFile`, else (with `dev`) the
    /// development secret. Returns nil when there is none; throws when the one given is too short
    /// (the same rule for the variable and the file).
    public static func secret(file secretFile: String?, dev: Bool) throws -> String? {
        if let value = ProcessInfo.processInfo.environment["PRESENCE_TOKEN_SECRET"], !value.isEmpty {
            return try checked(value, from: "PRESENCE_TOKEN_SECRET")
        }
        if let secretFile {
            guard let text = FileManager.default.contents(atPath: secretFile).map({ String(decoding: $0, as: UTF8.self) }) else {
                throw ServerError("cannot read the token secret file '\(secretFile)'")
            }
            return try checked(text.trimmingCharacters(in: .whitespacesAndNewlines), from: "'\(secretFile)'")
        }
        return dev ? developmentSecret : nil
    }

    /// `secret` if it is long enough; `source` names where it came from in the error.
    static func checked(_ secret: String, from source: String) throws -> String {
        guard secret.utf8.count >= minimumSecretBytes else {
            throw ServerError("the token secret in \(source) is shorter than \(minimumSecretBytes) bytes", isUsage: true)
        }
        return secret
    }
}

/// A configuration or start-up problem of the server, said plainly.
public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    /// The problem is in what the command was given (an option, a variable), not in the machine: the
    /// CLI exits with its bad-arguments code.
    public let isUsage: Bool
    public init(_ description: String, isUsage: Bool = false) {
        self.description = description
        self.isUsage = isUsage
    }
}

/// Tokens that verified, with their claims, until they expire.
final class VerifiedTokens: @unchecked Sendable {
    // @unchecked: `entries` is touched only under `lock`.
    private let lock = NSLock()
    private var entries: [String: PresenceClaims] = [:]
    static let capacity = 100_000

    func claims(for token: String) -> PresenceClaims? {
        lock.lock()
        defer { lock.unlock() }
        guard let claims = entries[token] else { return nil }
        if claims.exp.value <= Date() {
            entries[token] = nil
            return nil
        }
        return claims
    }

    func remember(_ token: String, _ claims: PresenceClaims) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[token] = claims
    }
}
