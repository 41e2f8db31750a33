import Foundation

/// Who a presence field is shown to, before exceptions: `everyone`, `contacts` (users who share a
/// conversation with its owner), `nobody`.
public enum Audience: String, Codable, Sendable, CaseIterable {
    case everyone, contacts, nobody
}

/// One field's rule: an audience and the users it is hidden from even when the audience would show it.
public struct AudienceRule: Codable, Sendable, Equatable {
    public var who: Audience
    /// Sorted, without repeats (`PrivacySettings.validated` makes it so).
    public var except: [String]

    public init(who: Audience, except: [String] = []) {
        self.who = who
        self.except = Array(Set(except)).sorted()
    }

    /// Whether the rule, on its own, shows the field to `viewer` (`isContact`: the two share a conversation).
    public func shows(to viewer: String, isContact: Bool) -> Bool {
        if Self.contains(except, viewer) { return false }
        switch who {
        case .everyone: return true
        case .contacts: return isContact
        case .nobody: return false
        }
    }

    /// Binary search in a sorted list: exception lists may hold a thousand ids.
    static func contains(_ sorted: [String], _ id: String) -> Bool {
        var low = 0, high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] == id { return true }
            if sorted[middle] < id { low = middle + 1 } else { high = middle }
        }
        return false
    }
}

/// A user's privacy settings: who sees their last seen and who sees that they are online.
///
/// JSON (`GET`/`PUT /v1/me/privacy`, and the value of each settings record of the `privacy/` log):
///
///     {"last_seen":{"who":"contacts","except":["carol"]},"online":{"who":"everyone","except":[]}}
public struct PrivacySettings: Codable, Sendable, Equatable {
    public var lastSeen: AudienceRule
    public var online: AudienceRule

    enum CodingKeys: String, CodingKey { case lastSeen = "last_seen", online }

    public init(lastSeen: AudienceRule, online: AudienceRule) {
        self.lastSeen = lastSeen
        self.online = online
    }

    /// What a user who never chose has: `contacts` for both fields.
    public static let `default` = PrivacySettings(lastSeen: AudienceRule(who: .contacts), online: AudienceRule(who: .contacts))

    /// The most ids an exception list may hold.
    public static let maxExceptions = 1024

    /// What is wrong with settings read from a log (nil: nothing), by the limits `PrivacyUpdate` keeps:
    /// exception lists within `maxExceptions`, of ids of 1 to 256 bytes, sorted without repeats.
    public var problem: String? {
        for (name, rule) in [("last_seen", lastSeen), ("online", online)] {
            if rule.except.count > Self.maxExceptions { return "\(name) excepts \(rule.except.count) users; at most \(Self.maxExceptions)" }
            if let bad = rule.except.first(where: { !(1...ChatRules.maxIDBytes).contains($0.utf8.count) }) {
                return "\(name) excepts an id of \(bad.utf8.count) bytes"
            }
            if rule.except != Array(Set(rule.except)).sorted() { return "\(name)'s exception list is not sorted without repeats" }
        }
        return nil
    }

    /// The settings as JSON, keys sorted: `{"last_seen":{"except":[..],"who":".."},"online":{..}}`.
    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? Array(encoder.encode(self))) ?? []
    }
}

/// A `PUT /v1/me/privacy` body: either field may be left out to keep it as it is. Unknown keys, an
/// audience other than the three, an exception list over `PrivacySettings.maxExceptions` ids, or an id
/// outside 1 to 256 bytes are refused (`ChatError.invalid`), so nothing half-understood is stored.
public struct PrivacyUpdate: Sendable, Equatable {
    public var lastSeen: AudienceRule?
    public var online: AudienceRule?

    public init(lastSeen: AudienceRule? = nil, online: AudienceRule? = nil) {
        self.lastSeen = lastSeen
        self.online = online
    }

    /// `current` with this update's fields in place.
    public func applied(to current: PrivacySettings) -> PrivacySettings {
        PrivacySettings(lastSeen: lastSeen ?? current.lastSeen, online: online ?? current.online)
    }

    /// Reads and checks a body (already held to `StrictJSON` by the caller, or not: invalid JSON is refused here too).
    public static func parse(_ body: [UInt8]) throws(ChatError) -> PrivacyUpdate {
        do {
            return try JSONDecoder().decode(Body.self, from: Data(body)).update
        } catch let error as ChatError {
            throw error
        } catch {
            throw ChatError(.invalid, "the body is not valid JSON; send e.g. \(example)")
        }
    }

    public static let example = #"{"last_seen":{"who":"contacts","except":["carol"]},"online":{"who":"everyone","except":[]}}"#

    /// Any key of a JSON object: the body's keys are all read, so an unknown one is refused (a
    /// `Decodable` with fixed keys would drop it without a word).
    private struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The body as sent, each mistake a `ChatError` that names it.
    private struct Body: Decodable {
        var update = PrivacyUpdate()

        init(from decoder: any Decoder) throws {
            guard let fields = try? decoder.container(keyedBy: Key.self) else {
                throw ChatError(.invalid, "the body must be a JSON object, e.g. \(PrivacyUpdate.example)")
            }
            for key in fields.allKeys.map(\.stringValue).sorted() where key != "last_seen" && key != "online" {
                throw ChatError(.invalid, "unknown key \"\(key)\": the settings are \"last_seen\" and \"online\"")
            }
            update.lastSeen = try Self.rule(in: fields, "last_seen")
            update.online = try Self.rule(in: fields, "online")
        }

        /// The rule under `name`, nil when the body leaves it out.
        static func rule(in fields: KeyedDecodingContainer<Key>, _ name: String) throws(ChatError) -> AudienceRule? {
            guard fields.contains(Key(name)) else { return nil }
            guard let rule = try? fields.nestedContainer(keyedBy: Key.self, forKey: Key(name)) else {
                throw ChatError(.invalid, "\"\(name)\" must be an object: {\"who\":\"everyone\"|\"contacts\"|\"nobody\",\"except\":[user ids]}")
            }
            for key in rule.allKeys.map(\.stringValue).sorted() where key != "who" && key != "except" {
                throw ChatError(.invalid, "unknown key \"\(key)\" in \"\(name)\": a rule has \"who\" and \"except\"")
            }
            guard let whoText = try? rule.decode(String.self, forKey: Key("who")), let who = Audience(rawValue: whoText) else {
                throw ChatError(.invalid, "\"\(name)\".\"who\" must be \"everyone\", \"contacts\" or \"nobody\"")
            }
            var except: [String] = []
            if rule.contains(Key("except")), (try? rule.decodeNil(forKey: Key("except"))) != true {
                guard var ids = try? rule.nestedUnkeyedContainer(forKey: Key("except")) else {
                    throw ChatError(.invalid, "\"\(name)\".\"except\" must be a list of user ids")
                }
                if let count = ids.count, count > PrivacySettings.maxExceptions {
                    throw ChatError(.invalid, "\"\(name)\".\"except\" holds \(count) ids; at most \(PrivacySettings.maxExceptions)")
                }
                while !ids.isAtEnd {
                    guard let id = try? ids.decode(String.self), (1...ChatRules.maxIDBytes).contains(id.utf8.count) else {
                        throw ChatError(.invalid, "\"\(name)\".\"except\" must hold user ids of 1 to \(ChatRules.maxIDBytes) bytes")
                    }
                    except.append(id)
                }
            }
            return AudienceRule(who: who, except: except)
        }
    }
}

/// Which of a subject's presence fields a viewer is shown. A hidden field reads as unknown: a hidden
/// online as `"online":false,"connections":0`, a hidden last seen as `"last_seen":null`, exactly what a
/// user never seen shows.
public struct Visibility: Sendable, Equatable, Hashable {
    public var lastSeen: Bool
    public var online: Bool

    public init(lastSeen: Bool, online: Bool) {
        self.lastSeen = lastSeen
        self.online = online
    }

    public static let all = Visibility(lastSeen: true, online: true)
    public static let none = Visibility(lastSeen: false, online: false)

    /// The fields as shown: `(online, lastSeen, connections)` with the hidden ones read as unknown.
    public func shown(online: Bool, lastSeen: Int64?, connections: Int) -> (online: Bool, lastSeen: Int64?, connections: Int) {
        (self.online && online, self.lastSeen ? lastSeen : nil, self.online ? connections : 0)
    }
}

/// Every user's settings at one moment: users not listed have `PrivacySettings.default`. A value, so a
/// reader holds a consistent copy while the store changes.
public struct PrivacyTable: Sendable, Equatable {
    public private(set) var settings: [String: PrivacySettings] = [:]

    public init(_ settings: [String: PrivacySettings] = [:]) {
        self.settings = settings
    }

    public subscript(user: String) -> PrivacySettings {
        get { settings[user] ?? .default }
        set { settings[user] = newValue == .default ? nil : newValue }
    }

    /// Forgets a user's settings (erasure).
    public mutating func remove(_ user: String) {
        settings[user] = nil
    }
}
