import Foundation
import JWTKit

/// Who a bearer token speaks for.
public struct PresenceClaims: JWTPayload, Equatable {
    /// The user id (or the gateway's name, for gateway tokens).
    public var sub: SubjectClaim
    public var exp: ExpirationClaim
    /// "user" or "gateway".
    public var role: String

    public init(subject: String, expires: Date, role: Role) {
        self.sub = SubjectClaim(value: subject)
        self.exp = ExpirationClaim(value: expires)
        self.role = role.rawValue
    }

    public enum Role: String, Sendable { case user, gateway }

    public var isGateway: Bool { role == Role.gateway.rawValue }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
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
        let claims = try await keys.verify(token, as: PresenceClaims.self)
        verified.remember(token, claims)
        return claims
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
        if error is DecodingError { return "the token's payload is not a PresenceLog token (it needs sub, exp and role)" }
        return "\(error)"
    }

    /// Reads the token secret: `PRESENCE_TOKEN_SECRET`, else the file `secretFile`, else (with `dev`) the
    /// development secret. Returns nil when there is none.
    public static func secret(file secretFile: String?, dev: Bool) throws -> String? {
        if let value = ProcessInfo.processInfo.environment["PRESENCE_TOKEN_SECRET"], !value.isEmpty { return value }
        if let secretFile {
            guard let text = FileManager.default.contents(atPath: secretFile).map({ String(decoding: $0, as: UTF8.self) }) else {
                throw ServerError("cannot read the token secret file '\(secretFile)'")
            }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard trimmed.utf8.count >= 16 else { throw ServerError("the token secret in '\(secretFile)' is shorter than 16 bytes") }
            return trimmed
        }
        return dev ? developmentSecret : nil
    }
}

/// A configuration or start-up problem of the server, said plainly.
public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
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
