/// The columns `text` takes on a terminal: two for East Asian wide and fullwidth characters and for
/// emoji shown as pictures, none for a character that is only combining marks or format controls, one
/// for the rest. Counted per character (grapheme cluster), so 👩‍💻 or é written as e + U+0301 is one
/// character of its width. Tables of user ids line up with it where `count` would not.
func displayWidth(_ text: String) -> Int {
    var columns = 0
    for character in text {
        var width = 0
        for scalar in character.unicodeScalars {
            let properties = scalar.properties
            if isWide(scalar.value) || properties.isEmojiPresentation
                || (scalar.value == 0xFE0F && character.unicodeScalars.count > 1) {
                width = 2
                break
            }
            switch properties.generalCategory {
            case .nonspacingMark, .enclosingMark, .format, .control: continue
            default: width = max(width, 1)
            }
        }
        columns += width
    }
    return columns
}

/// Unicode's East Asian Width W and F ranges (UAX #11), in brief: Hangul Jamo, CJK, Hiragana and
/// Katakana, Hangul syllables, compatibility ideographs, fullwidth forms, and the ideographic planes.
private func isWide(_ value: UInt32) -> Bool {
    switch value {
    case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
         0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
         0x20000...0x2FFFD, 0x30000...0x3FFFD:
        return true
    default:
        return false
    }
}

extension String {
    /// The text followed by spaces up to `width` terminal columns (`displayWidth`).
    func padding(toWidth width: Int) -> String {
        let columns = displayWidth(self)
        return columns >= width ? self : self + String(repeating: " ", count: width - columns)
    }
}
