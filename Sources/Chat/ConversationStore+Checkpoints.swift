import Foundation
import SegmentLog

/// Checkpoints of what the store holds in memory (`ChatCheckpoint`), so that a restart reads only the
/// log's tail, and closing.
extension ConversationStore {
    // MARK: Checkpoints

    /// The checkpoint of the state applied so far (commit thread, or init). The metadata is copied (copy
    /// on write: the arrays are shared until the next change) and encoded by the caller.
    func encodeCheckpoint() -> ChatCheckpoint {
        let (metas, clientIDs) = lock.withLock { (self.metas, self.clientIDs) }
        var mark = lastBatch
        if var known = mark {
            // The live path does not keep CRCs: read the batch's back once, here.
            try? reader.read(segment: known.segment, positions: [known.position]) { header, _ in known.crc = header.crc }
            mark = known
        }
        return ChatCheckpoint(
            nextOffset: appliedEnd, lastBatch: appliedEnd == 0 ? nil : mark, indexGeneration: index.generation, indexEnd: index.end,
            newest: clientIDs.newest, clientIDWindow: options.clientIDWindow,
            conversations: metas.map { meta in
                ChatCheckpoint.Conversation(id: meta.id, members: meta.members, createdAt: meta.createdAt, lastSeq: meta.lastSeq,
                                            lastTimestamp: meta.lastTimestamp, pages: meta.pages, newestJSON: meta.newest?.json)
            },
            clientIDs: clientIDs.all)
    }

    /// Makes the index durable, then replaces the checkpoint file with `checkpoint`.
    func writeCheckpoint(_ checkpoint: ChatCheckpoint) throws {
        guard lock.withLock({ indexProblem == nil }) else { return }
        try index.sync()
        let file = try AtomicFileWriter(path: indexDirectory + "/" + ChatCheckpoint.fileName)
        let bytes = checkpoint.encoded()
        var failure: LogError?
        bytes.withUnsafeBytes { raw in
            do throws(LogError) { try file.write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
        try file.commit()
    }

    /// On the commit thread after each request: starts a checkpoint in the background when one is due
    /// and none is being written.
    func checkpointIfDue() {
        recordsSinceCheckpoint += 1
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - lastCheckpoint.uptimeNanoseconds) / 1e9
        guard recordsSinceCheckpoint >= options.checkpointEveryRecords || elapsed >= options.checkpointEverySeconds else { return }
        guard lock.withLock({ () -> Bool in
            if checkpointRunning { return false }
            checkpointRunning = true
            return true
        }) else { return }
        recordsSinceCheckpoint = 0
        lastCheckpoint = DispatchTime.now()
        let checkpoint = UnsafeTransfer(encodeCheckpoint())
        checkpointQueue.async { [self] in
            do { try writeCheckpoint(checkpoint.value) } catch {
                // The next one, or `close`, tries again; a restart replays more of the log meanwhile.
            }
            lock.withLock { checkpointRunning = false }
        }
    }

    /// Writes a checkpoint now (between commits: call it from the writer's completion or when nothing is
    /// being posted), for tests and tools.
    public func checkpoint() throws {
        checkpointQueue.sync {}
        try writeCheckpoint(encodeCheckpoint())
    }

    /// Commits what is pending, closes the log cleanly and writes a checkpoint, so that the next start
    /// reads nothing of the log.
    public func close() throws {
        try writer.close()
        checkpointQueue.sync {}
        try writeCheckpoint(encodeCheckpoint())
    }
}

/// A value handed to another thread that alone uses it from then on.
private struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
