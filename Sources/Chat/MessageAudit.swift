import Foundation
import SegmentLog

/// `presence audit` for the messages log: every batch checked (`LogVerifier`), then the store's caches
/// (`DATA/messages-index`) checked against a fold of the log. For every message the checkpoint covers,
/// the index entry of its seq must name its record's offset and its batch's byte position (and pass its
/// own check); at the checkpoint's offset, the checkpoint must hold what the fold holds: the
/// conversations in creation order with their members, creation time, last seq and time, newest message
/// and number of index pages, and the client ids within its window.
///
/// Findings: a damaged batch is corruption (as for the presence log); a checkpoint or index missing or
/// not fitting the log is a cache to rebuild (an anomaly: the next start rebuilds it); an entry or a
/// checkpoint field that disagrees with the log while the checkpoint says it fits is corruption of the
/// cache (the server would fail those reads): remove `DATA/messages-index` and restart to rebuild it.
public enum MessageAudit {
    public struct Report: Sendable {
        public var logDirectory: String
        public var storage: LogVerifier.Report
        public var conversations = 0
        public var messages = 0
        /// The checkpoint's offset, when one fits the log.
        public var checkpointOffset: Int64?
        /// Records after the checkpoint (the next start replays them).
        public var recordsAfterCheckpoint = 0
        /// Index entries compared with the log.
        public var entriesChecked = 0
        /// A checkpoint or index that does not fit the log: rebuilt by the next start.
        public var cacheProblems: [String] = []
        /// Entries and checkpoint fields that disagree with the log (the first 20), and how many in all.
        public var disagreements: [String] = []
        public var disagreementCount = 0

        /// 0 clean, 1 anomalies (caches to rebuild, a torn tail, offset index files), 2 corruption.
        public var exitCode: Int32 {
            if !storage.corruption.isEmpty || disagreementCount > 0 { return 2 }
            if !cacheProblems.isEmpty || storage.tornTail != nil || !storage.indexProblems.isEmpty { return 1 }
            return 0
        }

        mutating func disagree(_ text: String) {
            disagreementCount += 1
            if disagreements.count < 20 { disagreements.append(text) }
        }
    }

    /// Audits the messages log of data directory `data`; nil when it has none.
    public static func run(data: String) throws -> Report? {
        let logDirectory = data + "/" + ConversationStore.logName
        guard FileSystem.isDirectory(logDirectory) else { return nil }
        var report = Report(logDirectory: logDirectory, storage: try LogVerifier.verify(directory: logDirectory))
        // Past a damaged batch the fold cannot go on: the storage findings say it all.
        guard report.storage.corruption.isEmpty else { return report }
        let reader = BatchReader(directory: logDirectory)
        let indexDirectory = data + "/" + ConversationStore.indexDirectoryName
        let restored = ConversationStore.restore(indexDirectory: indexDirectory, logEnd: .max, reader: reader, clientIDWindow: 0, readOnly: true)
        let checkpoint = restored.checkpoint
        if checkpoint == nil {
            report.cacheProblems.append("\(indexDirectory): \(restored.reason ?? "no checkpoint"); the next start rebuilds the message index from the log")
        }
        report.checkpointOffset = checkpoint?.nextOffset
        // The index file, mapped: entries are looked up as the log is folded.
        let indexBytes = try restored.index.map { try Data(contentsOf: URL(fileURLWithPath: $0.path), options: .alwaysMapped) } ?? Data()
        var fold = Fold(window: checkpoint?.clientIDWindow ?? 0)
        var compared = false
        let logReader = try LogReader(directory: logDirectory)
        try indexBytes.withUnsafeBytes { index in
            _ = try logReader.forEachLocatedBatch { info, records in
                for record in records {
                    if let checkpoint, !compared, record.offset >= checkpoint.nextOffset {
                        compare(fold, with: checkpoint, into: &report)
                        compared = true
                    }
                    if let checkpoint, record.offset >= checkpoint.nextOffset { report.recordsAfterCheckpoint += 1 }
                    guard let placed = fold.apply(record) else { continue }
                    report.messages += 1
                    guard let checkpoint, record.offset < checkpoint.nextOffset, Int(placed.number) < checkpoint.conversations.count else { continue }
                    let known = checkpoint.conversations[Int(placed.number)]
                    guard placed.seq <= known.lastSeq else { continue }
                    report.entriesChecked += 1
                    checkEntry(index, known: known, number: placed.number, seq: placed.seq, offset: record.offset,
                               position: info.position, indexPath: restored.index?.path ?? indexDirectory, into: &report)
                }
                return true
            }
        }
        if let checkpoint, !compared { compare(fold, with: checkpoint, into: &report) }
        report.conversations = fold.metas.count
        return report
    }

    private static func checkEntry(_ index: UnsafeRawBufferPointer, known: ChatCheckpoint.Conversation, number: UInt32, seq: Int,
                                   offset: Int64, position: Int64, indexPath: String, into report: inout Report) {
        let (page, slot) = MessageIndex.place(seq)
        let name = "seq \(seq) of conversation \(known.id)"
        guard page < known.pages.count else {
            report.disagree("\(indexPath): \(name) has no index page (the checkpoint lists \(known.pages.count))")
            return
        }
        let at = MessageIndex.position(ofUnit: known.pages[page]) + Int64(slot * MessageIndex.entrySize)
        guard at >= 0, at + Int64(MessageIndex.entrySize) <= Int64(index.count) else {
            report.disagree("\(indexPath): \(name): its entry at byte \(at) lies past the end of the file (\(index.count) bytes)")
            return
        }
        let base = Int(at)
        let entry = MessageIndex.Entry(offset: Int64(bigEndian: index.loadUnaligned(fromByteOffset: base, as: Int64.self)),
                                       position: UInt32(bigEndian: index.loadUnaligned(fromByteOffset: base + 8, as: UInt32.self)))
        let check = UInt32(bigEndian: index.loadUnaligned(fromByteOffset: base + 12, as: UInt32.self))
        if check != MessageIndex.check(conversation: number, seq: seq, entry) {
            report.disagree("\(indexPath): \(name): the entry at byte \(at) fails its check")
        } else if entry.offset != offset || entry.position != UInt32(truncatingIfNeeded: position) {
            report.disagree("\(indexPath): \(name): the entry at byte \(at) says offset \(entry.offset) in the batch at byte \(entry.position); the log has it at offset \(offset) in the batch at byte \(position)")
        }
    }

    /// The checkpoint against the fold of the log before its offset.
    private static func compare(_ fold: Fold, with checkpoint: ChatCheckpoint, into report: inout Report) {
        let path = "checkpoint at offset \(checkpoint.nextOffset)"
        if fold.metas.count != checkpoint.conversations.count {
            report.disagree("\(path): \(checkpoint.conversations.count) conversations; the log has \(fold.metas.count) before that offset")
        }
        for (meta, saved) in zip(fold.metas, checkpoint.conversations) {
            var wrong: [String] = []
            if meta.id != saved.id { wrong.append("id \(saved.id), the log's \(meta.id)") }
            if meta.members != saved.members { wrong.append("members \(saved.members), the log's \(meta.members)") }
            if meta.createdAt != saved.createdAt { wrong.append("created \(saved.createdAt), the log's \(meta.createdAt)") }
            if meta.lastSeq != saved.lastSeq { wrong.append("last seq \(saved.lastSeq), the log's \(meta.lastSeq)") }
            if meta.lastSeq > 0 && meta.lastTimestamp != saved.lastTimestamp { wrong.append("last time \(saved.lastTimestamp), the log's \(meta.lastTimestamp)") }
            let newest = meta.newest.map { ConversationStore.Message(seq: meta.lastSeq, sender: $0.sender, content: $0.content, timestamp: meta.lastTimestamp).json }
            if newest != saved.newestJSON { wrong.append("a different newest message") }
            let pages = meta.lastSeq == 0 ? 0 : MessageIndex.place(meta.lastSeq).page + 1
            if saved.pages.count != pages { wrong.append("\(saved.pages.count) index pages, \(pages) needed") }
            if !wrong.isEmpty { report.disagree("\(path): conversation \(meta.id): " + wrong.joined(separator: "; ")) }
        }
        let ids = fold.clientIDs.all
        if ids.count != checkpoint.clientIDs.count
            || !zip(ids, checkpoint.clientIDs).allSatisfy({ $0.fingerprint == $1.fingerprint && $0.entry == $1.entry }) {
            report.disagree("\(path): \(checkpoint.clientIDs.count) client ids within the window; the log has \(ids.count) (or others)")
        }
    }

    /// The store's fold, plainly: what a conversation is at an offset, and where each message goes.
    struct Fold {
        struct Meta {
            var id: String
            var members: [String]
            var createdAt: Int64
            var lastSeq = 0
            var lastTimestamp: Int64 = 0
            var newest: (sender: String, content: String)?
        }

        var metas: [Meta] = []
        var numbers: [String: UInt32] = [:]
        var clientIDs: ClientIDWindow
        /// Every (conversation, sender, client id) of a message with its time, for repeats: by the whole key,
        /// not a fingerprint. Entries past the window are dropped when the table has doubled.
        var sent: [String: Int64] = [:]
        var sweepAt = 1 << 16

        init(window: Int64) { clientIDs = ClientIDWindow(window: window) }

        /// Applies a record; returns the conversation number and seq of a message (nil for a repeat).
        mutating func apply(_ record: RecordView) -> (number: UInt32, seq: Int)? {
            defer { clientIDs.observe(record.timestamp) }
            guard let key = record.key, let value = record.value, let parsed = MessageRecord.parse(value) else { return nil }
            let id = String(decoding: key, as: UTF8.self)
            switch parsed {
            case .created(let members, _):
                if numbers[id] == nil {
                    numbers[id] = UInt32(metas.count)
                    metas.append(Meta(id: id, members: members, createdAt: record.timestamp))
                }
                return nil
            case .message(let sender, let content, let clientID):
                guard let number = numbers[id] else { return nil }
                if let clientID {
                    // The store's rule: a key used within the window (before this record) is a repeat.
                    let full = "\(number)\u{0}\(sender)\u{0}\(clientID)"
                    let cutoff = clientIDs.cutoff
                    if let earlier = sent[full], earlier >= cutoff { return nil }
                    sent[full] = record.timestamp
                    if sent.count >= sweepAt {
                        sent = sent.filter { $0.value >= cutoff }
                        sweepAt = max(1 << 16, sent.count * 2)
                    }
                }
                let seq = metas[Int(number)].lastSeq + 1
                metas[Int(number)].lastSeq = seq
                metas[Int(number)].lastTimestamp = record.timestamp
                metas[Int(number)].newest = (sender, content)
                if let clientID {
                    clientIDs.record(ClientIDWindow.fingerprint(conversation: number, sender: sender, clientID: clientID),
                                     .init(seq: UInt32(truncatingIfNeeded: seq), timestamp: record.timestamp))
                }
                return (number, seq)
            }
        }
    }
}
