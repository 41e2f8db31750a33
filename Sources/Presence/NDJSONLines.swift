/// How NDJSON input is cut into lines, in one place for every reader (`presence ingest`'s input,
/// `POST /v1/events`' body): a line ends at "\n" (the last may end at the end of the input), one "\r"
/// before it is dropped, and a blank line (spaces, tabs and carriage returns only) is skipped but
/// counted, so that line numbers in errors are the editor's.
public enum NDJSONLines {
    /// `line` without its trailing "\r", if any.
    @inline(__always)
    public static func trimmed(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let last = line.last, last == 13 else { return line }
        return UnsafeRawBufferPointer(rebasing: line.dropLast())
    }

    /// Whether a line holds nothing but spaces, tabs and carriage returns.
    @inline(__always)
    public static func isBlank(_ line: UnsafeRawBufferPointer) -> Bool {
        line.allSatisfy { $0 == 32 || $0 == 9 || $0 == 13 }
    }

    /// Calls `visit(number, line)` for each line of a whole input that is not blank, numbered from 1
    /// counting every line, each trimmed.
    public static func forEach(in input: UnsafeRawBufferPointer, _ visit: (Int, UnsafeRawBufferPointer) throws -> Void) rethrows {
        var number = 0
        var start = 0
        while start < input.count {
            let end = input[start...].firstIndex(of: 10) ?? input.count
            number += 1
            let line = trimmed(UnsafeRawBufferPointer(rebasing: input[start..<end]))
            start = end + 1
            if !isBlank(line) { try visit(number, line) }
        }
    }
}
