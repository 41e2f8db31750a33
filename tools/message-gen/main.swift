// presence-message-gen: a messages log of a chosen size, written straight into a data directory, as the
// server would have written it (the same record values, conversation ids and group-committed batches),
// for the message-store benchmarks (BENCHMARKS.md, issue 20).
//
// Model: `--conversations` conversations are created first; conversation 0 is alice and bob's and gets
// `--big` of the messages (a long-lived chat to page back through); the others are pairs (90%) or groups
// of 3-8 (10%) of `--users` users, and the rest of the messages go to them, each to a conversation picked
// at random. A message's sender is one of its conversation's members; its text a line of the corpus
// (`--corpus`, a text file: each non-empty line up to 300 bytes is one possible message); half carry a
// client_id. Times run evenly over the `--days` before `--end`. Records are appended `--batch` at a time
// (the server's group commit under load writes about that many per batch). The same arguments write the
// same log. Prints one JSON line: the big conversation's id and the counts.
//
//   presence-message-gen --data DIR --messages 10000000 --conversations 100000 --big 1000000 --corpus FILE

import Chat
import Foundation
import SegmentLog

struct Options {
    var data = ""
    var messages = 10_000_000
    var conversations = 100_000
    var big = 1_000_000
    var users = 50_000
    var corpus = ""
    var seed: UInt64 = 42
    var end = Int64(Date().timeIntervalSince1970 * 1000)
    var days: Int64 = 30
    var batch = 32
    var tsv: String?
    var tsvRows = 1_000_000
}

func usage(asked: Bool = false) -> Never {
    (asked ? FileHandle.standardOutput : FileHandle.standardError).write(Data("""
        usage: presence-message-gen --data DIR --corpus FILE [--messages N] [--conversations N] [--big N]
                                    [--users N] [--seed N] [--end MS] [--days N] [--batch N]
                                    [--tsv FILE [--tsv-rows N]]
          --data DIR           data directory to write DIR/messages into (must have no messages log yet)
          --corpus FILE        text file; each non-empty line (cut to 300 bytes) is a possible message
          --messages N         messages in all (default 10000000)
          --conversations N    conversations (default 100000)
          --big N              messages of conversation 0, alice and bob's (default 1000000)
          --users N            users the other conversations are made of (default 50000)
          --seed N             random seed (default 42)
          --end MS             time of the last message, epoch ms (default now)
          --days N             days the messages span (default 30)
          --batch N            records a batch (default 32, a busy group commit)
          --tsv FILE           also write the first --tsv-rows messages (default 1000000) as
                               conversation<TAB>seq<TAB>sender<TAB>content<TAB>time for PostgreSQL's COPY

        """.utf8))
    exit(asked ? 0 : 64)
}

func parse() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    func value(_ name: String) -> String {
        guard let next = arguments.popFirst() else { FileHandle.standardError.write(Data("\(name) needs a value\n".utf8)); usage() }
        return next
    }
    func number(_ name: String) -> Int {
        guard let n = Int(value(name)), n >= 0 else { FileHandle.standardError.write(Data("\(name) needs a whole number\n".utf8)); usage() }
        return n
    }
    while let argument = arguments.popFirst() {
        switch argument {
        case "--data": options.data = value(argument)
        case "--corpus": options.corpus = value(argument)
        case "--messages": options.messages = number(argument)
        case "--conversations": options.conversations = number(argument)
        case "--big": options.big = number(argument)
        case "--users": options.users = number(argument)
        case "--seed": options.seed = UInt64(number(argument))
        case "--end": options.end = Int64(number(argument))
        case "--days": options.days = Int64(number(argument))
        case "--batch": options.batch = number(argument)
        case "--tsv": options.tsv = value(argument)
        case "--tsv-rows": options.tsvRows = number(argument)
        case "--help", "-h": usage(asked: true)
        default:
            FileHandle.standardError.write(Data("unknown argument \(argument)\n".utf8))
            usage()
        }
    }
    guard !options.data.isEmpty, !options.corpus.isEmpty else { FileHandle.standardError.write(Data("--data and --corpus are required\n".utf8)); usage() }
    guard options.conversations >= 2, options.users >= 8, options.batch >= 1, options.big <= options.messages else {
        FileHandle.standardError.write(Data("need --conversations >= 2, --users >= 8, --batch >= 1 and --big <= --messages\n".utf8))
        usage()
    }
    return options
}

/// SplitMix64: fast, and the same on every machine.
struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func hex(_ digits: Int) -> String {
        let value = next()
        return (0..<digits).map { String((value >> (4 * UInt64($0))) & 15, radix: 16) }.joined()
    }
}

let options = parse()
var random = Random(state: options.seed)
guard let corpusText = try? String(contentsOfFile: options.corpus, encoding: .utf8) else {
    FileHandle.standardError.write(Data("cannot read --corpus \(options.corpus) as UTF-8 text\n".utf8))
    exit(1)
}
let lines: [String] = corpusText.split(separator: "\n").compactMap { line in
    let trimmed = line.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty else { return nil }
    var cut = Substring(trimmed)
    while cut.utf8.count > 300 { cut = cut.dropLast() }
    return String(cut)
}
guard !lines.isEmpty else {
    FileHandle.standardError.write(Data("--corpus \(options.corpus) has no lines\n".utf8))
    exit(1)
}

do {
    let directory = try DataDirectory(path: options.data)
    var configuration = LogConfiguration()
    configuration.durability = .never
    let log = try directory.openLog(ConversationStore.logName, configuration: configuration)
    guard log.endOffset == 0 else {
        FileHandle.standardError.write(Data("\(options.data)/messages already holds \(log.endOffset) records: give an empty data directory\n".utf8))
        exit(64)
    }
    // Conversations: ids as the server makes them (conv_ and 12 hex digits), members, creation.
    var ids: [String] = []
    var members: [[String]] = []
    var seen = Set<String>()
    for number in 0..<options.conversations {
        var id = "conv_" + random.hex(12)
        while !seen.insert(id).inserted { id = "conv_" + random.hex(12) }
        ids.append(id)
        if number == 0 {
            members.append(["alice", "bob"])
            continue
        }
        let size = random.below(10) == 0 ? 3 + random.below(6) : 2
        var chosen: [String] = []
        while chosen.count < size {
            let user = "u\(random.below(options.users))"
            if !chosen.contains(user) { chosen.append(user) }
        }
        members.append(chosen)
    }
    let start = options.end - options.days * 86_400_000
    let step = Double(options.days * 86_400_000) / Double(max(options.messages, 1))
    var buffer = RecordBuffer()
    func flush() throws {
        guard buffer.count > 0 else { return }
        _ = try log.append(buffer)
        buffer = RecordBuffer()
    }
    for number in 0..<options.conversations {
        buffer.append(timestamp: start, key: Array(ids[number].utf8),
                      value: ConversationStore.createdRecordValue(members: members[number], by: members[number][0]))
        if buffer.count >= 4096 { try flush() }
    }
    try flush()
    var rows: [UInt8] = []
    let tsvFile = try options.tsv.map { path -> FileHandle in
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw LogError(.invalidArgument, "cannot write \(path)") }
        return handle
    }
    var seqs = [Int](repeating: 0, count: options.conversations)
    var bigLeft = options.big
    var bytes = 0
    let began = Date()
    for index in 0..<options.messages {
        let left = options.messages - index
        let number = random.below(left) < bigLeft ? 0 : 1 + random.below(options.conversations - 1)
        if number == 0 { bigLeft -= 1 }
        let sender = members[number][random.below(members[number].count)]
        let content = lines[random.below(lines.count)]
        let clientID = random.below(2) == 0 ? "m-" + random.hex(12) : nil
        let time = start + Int64(Double(index) * step)
        let value = ConversationStore.messageRecordValue(sender: sender, content: content, clientID: clientID)
        bytes += value.count
        buffer.append(timestamp: time, key: Array(ids[number].utf8), value: value)
        seqs[number] += 1
        if buffer.count >= options.batch { try flush() }
        if let tsvFile, index < options.tsvRows {
            // COPY's text format: backslash, tab and newline escaped.
            let escaped = content.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
            rows.append(contentsOf: "\(ids[number])\t\(seqs[number])\t\(sender)\t\(escaped)\t\(time)\n".utf8)
            if rows.count >= 1 << 20 { tsvFile.write(Data(rows)); rows.removeAll(keepingCapacity: true) }
        }
        if index % 1_000_000 == 999_999 {
            FileHandle.standardError.write(Data("\(index + 1) messages written (\(Int(Date().timeIntervalSince(began))) s)\n".utf8))
        }
    }
    try flush()
    if let tsvFile { tsvFile.write(Data(rows)); try tsvFile.close() }
    try log.close()
    print("{\"big\":\"\(ids[0])\",\"big_members\":[\"alice\",\"bob\"],\"big_messages\":\(seqs[0]),\"conversations\":\(options.conversations),"
          + "\"messages\":\(options.messages),\"value_bytes\":\(bytes),\"corpus_lines\":\(lines.count),\"end_offset\":\(log.endOffset)}")
    withExtendedLifetime(directory) {}
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
