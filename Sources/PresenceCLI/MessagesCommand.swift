import ArgumentParser
import Chat
import Foundation
import SegmentLog

struct MessagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messages",
        abstract: "A page of one conversation's messages, read from the data directory.",
        discussion: """
            Prints the messages as the API shows them, one JSON object a line ({"seq","sender","content",\
            "ts"}), in seq order: with --after-seq N the oldest after N, with --before-seq N the newest \
            before N, with neither the newest of all (the page a chat opens on). Then, on standard error, \
            the conversation's members and message count, whether more lie beyond the page, and how it \
            was read: through the message index (DATA/messages-index) and the log after its checkpoint, \
            or, when those do not fit the log, by scanning the whole log. It opens nothing for writing, \
            so it runs beside `presence serve`. Exit 64 for a conversation the log does not have.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("The conversation id (conv_…).", valueName: "id"))
    var conversation: String

    @Option(help: ArgumentHelp("The oldest messages after this seq.", valueName: "seq"))
    var afterSeq: Int?

    @Option(help: ArgumentHelp("The newest messages before this seq.", valueName: "seq"))
    var beforeSeq: Int?

    @Option(help: ArgumentHelp("The most messages to print.", valueName: "n"))
    var limit: Int = 50

    func validate() throws {
        if afterSeq != nil && beforeSeq != nil { throw ValidationError("give --after-seq (older to newer) or --before-seq (newer to older), not both") }
        if let afterSeq, afterSeq < 0 { throw ValidationError("--after-seq must be 0 or more") }
        if let beforeSeq, beforeSeq < 1 { throw ValidationError("--before-seq must be 1 or more") }
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        guard !conversation.isEmpty else { throw ValidationError("--conversation is empty") }
    }

    func run() throws {
        let page: ConversationStore.Page = afterSeq.map { .after($0) } ?? beforeSeq.map { .before($0) } ?? .latest
        let found: MessageHistory.Result?
        do {
            found = try MessageHistory.read(data: data, conversation: conversation, page: page, limit: limit)
        } catch {
            throw fail(error)
        }
        guard let found else {
            throw fail(ValidationError("no conversation '\(conversation)' in \(data)/\(ConversationStore.logName)"))
        }
        var out: [UInt8] = []
        for message in found.messages {
            out.append(contentsOf: message.json)
            out.append(10)
            if out.count >= 1 << 16 { try flush(&out) }
        }
        try flush(&out)
        let shown = found.messages.isEmpty ? "no messages on this page"
            : "seq \(found.messages[0].seq)-\(found.messages[found.messages.count - 1].seq) shown"
        let beyond: String
        switch page {
        case .after: beyond = found.hasMore ? "newer ones follow" : "none newer"
        case .before, .latest: beyond = found.hasMore ? "older ones precede" : "none older"
        }
        printError("conversation \(conversation) (\(found.members.joined(separator: ", "))): \(grouped(found.lastSeq)) messages; \(shown); \(beyond); \(found.how)")
    }

    private func flush(_ out: inout [UInt8]) throws {
        try out.withUnsafeBytes { try writeAll(1, $0) }
        out.removeAll(keepingCapacity: true)
    }
}
