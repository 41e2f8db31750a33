/// Event times: milliseconds since 1970-01-01T00:00:00Z, read from and written as ISO-8601.
public enum Timestamp {
    /// The latest time accepted: 9999-12-31T23:59:59.999Z.
    public static let maxMilliseconds: Int64 = 253_402_300_799_999

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)`; digits past milliseconds are dropped.
    /// Returns nil for anything else, an impossible date, or a time outside 1970 ... 9999.
    public static func parseISO8601(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        let n = bytes.count
        if n == 24, let base = bytes.baseAddress, let ms = parseCanonicalUTC(base) { return ms }
        guard n >= 20 else { return nil }
        @inline(__always) func digit(_ i: Int) -> Int? {
            let c = bytes[i]
            return c >= 48 && c <= 57 ? Int(c - 48) : nil
        }
        @inline(__always) func number(_ i: Int, _ count: Int) -> Int? {
            var value = 0
            for j in i..<i + count {
                guard let d = digit(j) else { return nil }
                value = value * 10 + d
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == 45, let month = number(5, 2), bytes[7] == 45, let day = number(8, 2),
              bytes[10] == 84 || bytes[10] == 116,
              let hour = number(11, 2), bytes[13] == 58, let minute = number(14, 2), bytes[16] == 58, let second = number(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year, month), hour < 24, minute < 60, second < 60 else { return nil }
        var i = 19
        var millis = 0
        if i < n && bytes[i] == 46 {
            i += 1
            var digits = 0
            while i < n, let d = digit(i) {
                if digits < 3 { millis = millis * 10 + d }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            while digits < 3 { millis *= 10; digits += 1 }
        }
        guard i < n else { return nil }
        var offsetMinutes = 0
        switch bytes[i] {
        case 90, 122:  // Z z
            i += 1
        case 43, 45:  // + -
            let sign = bytes[i] == 45 ? -1 : 1
            i += 1
            guard n - i >= 4, let oh = number(i, 2) else { return nil }
            i += 2
            if bytes[i] == 58 { i += 1 }
            guard n - i >= 2, let om = number(i, 2), oh < 24, om < 60 else { return nil }
            i += 2
            offsetMinutes = sign * (oh * 60 + om)
        default:
            return nil
        }
        guard i == n else { return nil }
        let days = Int64(daysFromCivil(year, month, day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetMinutes * 60)
        let ms = seconds * 1000 + Int64(millis)
        guard ms >= 0, ms <= maxMilliseconds else { return nil }
        return ms
    }

    /// The form nearly every event carries, `2024-01-15T09:41:03.120Z` (24 bytes), read three words at
    /// a time: the separators checked with one mask a word, the digits with two. Nil for anything else
    /// (`parseISO8601` then reads it byte by byte and gives the same answer for what both accept).
    @inline(__always)
    private static func parseCanonicalUTC(_ p: UnsafeRawPointer) -> Int64? {
        let a = p.loadUnaligned(as: UInt64.self)  // YYYY-MM-
        let b = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)  // DDTHH:MM
        let c = p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)  // :SS.mmmZ
        // Bytes are little-endian: byte k of a word sits at bits 8k ..< 8k + 8.
        guard a & 0xFF00_00FF_0000_0000 == 0x2D00_002D_0000_0000,  // '-' at 4 and 7
              b & 0x0000_FF00_00FF_0000 == 0x0000_3A00_0054_0000,  // 'T' at 10, ':' at 13
              c & 0xFF00_0000_FF00_00FF == 0x5A00_0000_2E00_003A  // ':' at 16, '.' at 19, 'Z' at 23
        else { return nil }
        let digitsA: UInt64 = 0x00FF_FF00_FFFF_FFFF, digitsB: UInt64 = 0xFFFF_00FF_FF00_FFFF, digitsC: UInt64 = 0x00FF_FFFF_00FF_FF00
        @inline(__always) func allDigits(_ w: UInt64, _ mask: UInt64) -> Bool {
            // High nibble 3, and a low nibble that stays below 16 when 6 is added (0 ... 9).
            w & mask & 0xF0F0_F0F0_F0F0_F0F0 == mask & 0x3030_3030_3030_3030
                && ((w & mask & 0x0F0F_0F0F_0F0F_0F0F) &+ (mask & 0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0 == 0
        }
        guard allDigits(a, digitsA), allDigits(b, digitsB), allDigits(c, digitsC) else { return nil }
        @inline(__always) func d(_ w: UInt64, _ k: Int) -> Int { Int((w >> UInt64(8 * k)) & 0x0F) }
        let year = d(a, 0) * 1000 + d(a, 1) * 100 + d(a, 2) * 10 + d(a, 3)
        let month = d(a, 5) * 10 + d(a, 6)
        let day = d(b, 0) * 10 + d(b, 1)
        let hour = d(b, 3) * 10 + d(b, 4)
        let minute = d(b, 6) * 10 + d(b, 7)
        let second = d(c, 1) * 10 + d(c, 2)
        let millis = d(c, 4) * 100 + d(c, 5) * 10 + d(c, 6)
        guard month >= 1, month <= 12, day >= 1, day <= daysInMonth(year, month), hour < 24, minute < 60, second < 60,
              year >= 1970
        else { return nil }
        let seconds = Int64(daysFromCivil(year, month, day)) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        return seconds * 1000 + Int64(millis)
    }

    /// Parses an ISO-8601 time (see `parseISO8601`) or integer epoch milliseconds.
    public static func parse(_ text: String) -> Int64? {
        if let ms = Int64(text) { return ms >= 0 && ms <= maxMilliseconds ? ms : nil }
        var text = text
        return text.withUTF8 { parseISO8601(UnsafeRawBufferPointer($0)) }
    }

    /// `2024-01-15T09:41:03.120Z`: UTC, always with milliseconds.
    public static func format(_ ms: Int64) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        append(ms, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `ms` as a JSON value: the quoted ISO-8601 form, or `null` for nil.
    public static func appendJSON(_ ms: Int64?, to bytes: inout [UInt8]) {
        guard let ms else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        bytes.append(34)
        append(ms, to: &bytes)
        bytes.append(34)
    }

    /// Appends the ISO-8601 form of `ms` (24 bytes) to `bytes`.
    public static func append(_ ms: Int64, to bytes: inout [UInt8]) {
        let clamped = min(max(ms, 0), maxMilliseconds)
        let days = Int(clamped / 86_400_000)
        let inDay = Int(clamped % 86_400_000)
        let (year, month, day) = civilFromDays(days)
        @inline(__always) func put(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(48 + rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        put(year, 4); bytes.append(45); put(month, 2); bytes.append(45); put(day, 2); bytes.append(84)
        put(inDay / 3_600_000, 2); bytes.append(58); put(inDay / 60_000 % 60, 2); bytes.append(58)
        put(inDay / 1000 % 60, 2); bytes.append(46); put(inDay % 1000, 3); bytes.append(90)
    }

    static func isLeap(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
