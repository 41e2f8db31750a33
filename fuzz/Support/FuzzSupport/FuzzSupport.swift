#if FUZZING
import CFuzzing
#endif
import Foundation

/// What the fuzz targets share: their `main`, and a reader that takes decisions (split points, flags)
/// from the fuzzer's bytes.
///
/// A target is one file defining `@_cdecl("LLVMFuzzerTestOneInput")` and an `@main` that calls
/// `FuzzRunner.main`. Built for fuzzing (tools/fuzz.sh: `-DFUZZING`, AddressSanitizer, libFuzzer's
/// coverage instrumentation, and libFuzzer without its own `main`), that runs libFuzzer's driver with
/// the target; built plainly (`swift build`), it runs the same test over the files and folders named
/// on the command line: a crash file, or a whole corpus, replayed without sanitizers.
public enum FuzzRunner {
    /// The target's `main`: libFuzzer's driver in a fuzzing build (every libFuzzer flag works), else
    /// `reproduce(test)`.
    public static func main(_ target: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt, _ test: ([UInt8]) -> Void) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, target))
        #else
        reproduce(test)
        exit(0)
        #endif
    }

    /// Runs `test` over every file named in `arguments` (a folder: every file in it, sorted) and
    /// prints how many ran. Exits with status 2 when nothing was named.
    public static func reproduce(_ test: ([UInt8]) -> Void, arguments: [String] = Array(CommandLine.arguments.dropFirst())) {
        guard !arguments.isEmpty else {
            FileHandle.standardError.write(Data("usage: \(CommandLine.arguments.first ?? "fuzz-target") FILE-OR-FOLDER...\n".utf8))
            exit(2)
        }
        var ran = 0
        for path in arguments {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
                exit(2)
            }
            let files = isFolder.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                test([UInt8](data))
                ran += 1
            }
        }
        print("ran \(ran) inputs")
    }
}

/// Reads decisions from the front of a fuzz input, the rest being the data under test: the same
/// input always makes the same decisions, so a crash reproduces.
public struct FuzzInput {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    /// The next byte, or 0 once the input is used up.
    public mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }

    /// A number in 0..<bound (bound > 0) from the next byte.
    public mutating func number(below bound: Int) -> Int { Int(byte()) % bound }

    /// Everything not taken yet.
    public mutating func rest() -> [UInt8] {
        defer { bytes = [] }
        return Array(bytes)
    }
}

/// Builds a test input from the fuzzer's pointer and size.
@inlinable
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}
