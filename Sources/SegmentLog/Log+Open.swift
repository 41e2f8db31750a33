// Opening a log: creating its first segment, or finding its segments and recovering the last one when
// the log was not closed cleanly (a torn or damaged tail is cut at the last valid batch, index files
// that do not fit their segment are rebuilt). `Log.swift` holds the log itself and its appends.

extension Log {
    /// Opens the log in `directory` (creating it), recovering it when it was not closed cleanly.
    /// `report` receives one line for each thing recovery did.
    ///
    /// The caller must hold the data directory's lock (`DataDirectory`).
    public static func open(directory: String, configuration: LogConfiguration = LogConfiguration(),
                            report: (String) -> Void = { _ in }) throws(LogError) -> Log {
        try configuration.validate()
        try FileSystem.createDirectory(directory)
        var lines: [String] = []
        func note(_ line: String) {
            lines.append(line)
            report(line)
        }
        // Leftovers of an interrupted atomic write, and indexes whose log is gone.
        let names = try FileSystem.list(directory)
        for name in names where name.hasSuffix(".tmp") {
            try FileSystem.remove(directory + "/" + name)
        }
        var bases = try segmentBaseOffsets(in: directory)
        let baseSet = Set(bases.map(segmentName))
        for name in names where name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            let stem = String(name.prefix(while: { $0 != "." }))
            if !baseSet.contains(stem) { try FileSystem.remove(directory + "/" + name) }
        }

        let markerPath = directory + "/" + cleanShutdownName
        let clean = FileSystem.exists(markerPath) || bases.isEmpty
        let recoveryPoint = clean ? Int64.max : readRecoveryPoint(directory)
        let isNew = bases.isEmpty
        if isNew {
            bases = [0]
            try createSegmentFiles(directory, baseOffset: 0)
            try FileSystem.syncDirectory(directory)
        }

        // Scan what may hold unsynced bytes: on an unclean open, every segment from the one holding the
        // recovery point; on a clean open, the last segment's headers only (to find the end).
        let firstToVerify = clean ? bases.count : max(0, (bases.lastIndex(where: { $0 <= recoveryPoint }) ?? 0))
        var sealed: [SealedSegment] = []
        var active: ActiveSegment?
        var endOffset: Int64 = bases[0]
        var maxTimestamp: Int64?
        func noteTimestamp(_ timestamp: Int64?) {
            if let timestamp, timestamp != Int64.min { maxTimestamp = max(maxTimestamp ?? timestamp, timestamp) }
        }
        var index = 0
        while index < bases.count {
            let base = bases[index]
            let isLast = index == bases.count - 1
            let verify = index >= firstToVerify
            if !verify && !isLast {
                let size = FileSystem.size(logPath(directory, base)) ?? 0
                noteTimestamp(try ensureIndexes(directory, baseOffset: base, logSize: size, configuration: configuration))
                sealed.append(SealedSegment(baseOffset: base, size: size))
                endOffset = bases[index + 1]
                index += 1
                continue
            }
            let scan = try scanSegment(directory, baseOffset: base, expectedBase: index == 0 ? nil : endOffset,
                                       verify: verify || !clean, configuration: configuration)
            if let cut = scan.cut {
                let path = logPath(directory, base)
                note("\(path): \(cut.reason) at byte \(scan.validBytes); truncated \(cut.bytes) bytes")
                let file = try File.openForWriting(path)
                try file.truncate(to: scan.validBytes)
                try file.syncData()
                for later in bases[(index + 1)...] {
                    let laterSize = FileSystem.size(logPath(directory, later)) ?? 0
                    note("\(logPath(directory, later)): removed, \(laterSize) bytes after the truncation point")
                    for suffix in [".log", ".index", ".timeindex"] {
                        try FileSystem.remove(directory + "/" + segmentName(later) + suffix)
                    }
                }
                bases.removeSubrange((index + 1)...)
                try FileSystem.syncDirectory(directory)
            }
            endOffset = scan.endOffset
            noteTimestamp(scan.builder.maxTimestamp)
            if index == bases.count - 1 {
                active = try openActive(directory, baseOffset: base, size: scan.validBytes, builder: scan.builder)
            } else {
                try writeIndexFiles(directory, baseOffset: base, builder: scan.builder, sealing: true)
                sealed.append(SealedSegment(baseOffset: base, size: scan.validBytes))
            }
            index += 1
        }
        guard let active else { throw LogError(.corrupt, "\(directory): no active segment after recovery") }
        if !clean && !isNew && lines.isEmpty { note("\(directory): not closed cleanly; scanned from offset \(bases[firstToVerify]) and found no damage") }
        try FileSystem.remove(markerPath)
        try FileSystem.syncDirectory(directory)
        return Log(directory: directory, configuration: configuration, sealed: sealed, active: active,
                   endOffset: endOffset, openedCleanly: clean, report: lines, maxTimestamp: maxTimestamp)
    }

    struct ScanResult {
        var validBytes: Int64
        var endOffset: Int64
        var builder: SegmentIndexBuilder
        var cut: (reason: String, bytes: Int64)?
    }

    /// Walks a segment, rebuilding its index; with `verify`, checks each batch's CRC and records.
    /// Stops at the first batch that is not valid and reports it as `cut`.
    static func scanSegment(_ directory: String, baseOffset: Int64, expectedBase: Int64?, verify: Bool,
                                    configuration: LogConfiguration) throws(LogError) -> ScanResult {
        let file = try File.openForReading(logPath(directory, baseOffset))
        let scanner = try SegmentScanner(file: file, from: 0, maxBatchSize: configuration.maxBatchSizeOnDisk)
        let decoder = RecordBatchDecoder()
        var builder = SegmentIndexBuilder(baseOffset: baseOffset, intervalBytes: configuration.indexIntervalBytes)
        var next = baseOffset
        if let expectedBase, expectedBase != baseOffset {
            return ScanResult(validBytes: 0, endOffset: expectedBase, builder: builder,
                              cut: ("segment is named \(baseOffset) but the previous one ends at \(expectedBase)", scanner.fileSize))
        }
        while true {
            let position = scanner.position
            func cut(_ reason: String) -> ScanResult {
                ScanResult(validBytes: position, endOffset: next, builder: builder, cut: (reason, scanner.fileSize - position))
            }
            switch try scanner.next() {
            case .end:
                return ScanResult(validBytes: position, endOffset: next, builder: builder, cut: nil)
            case .incomplete(_, let bytes):
                return cut("incomplete batch (\(bytes) bytes)")
            case .invalid(_, let reason):
                return cut(reason)
            case .batch(let header, let bytes, _):
                if header.baseOffset != next { return cut("batch starts at offset \(header.baseOffset), expected \(next)") }
                if verify {
                    if !RecordBatchDecoder.crcMatches(bytes, header: header) { return cut("bad CRC") }
                    do {
                        try decoder.forEachRecord(bytes, header: header) { _ in }
                    } catch let error as BatchFormatError {
                        return cut(error.reason)
                    } catch {
                        return cut("\(error)")
                    }
                }
                _ = builder.add(header, position: position)
                next = header.nextOffset
            }
        }
    }

    static func readRecoveryPoint(_ directory: String) -> Int64 {
        guard let file = try? File.openForReading(directory + "/" + recoveryPointName),
              let bytes = try? file.readAll() else { return 0 }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.count >= 2, lines[0] == "1", let offset = Int64(lines[1]) else { return 0 }
        return offset
    }

    static func writeRecoveryPoint(_ directory: String, _ offset: Int64) throws(LogError) {
        try FileSystem.writeAtomically(Array("1\n\(offset)\n".utf8), to: directory + "/" + recoveryPointName)
    }

    static func logPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".log" }
    static func offsetIndexPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".index" }
    static func timeIndexPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".timeindex" }

    static func createSegmentFiles(_ directory: String, baseOffset: Int64) throws(LogError) {
        for path in [logPath(directory, baseOffset), offsetIndexPath(directory, baseOffset), timeIndexPath(directory, baseOffset)] {
            let file = try File.openForWriting(path, create: true)
            try file.truncate(to: 0)
        }
    }

    /// Checks a sealed segment's index files and rebuilds them from the log when they are missing or inconsistent.
    /// Returns the segment's largest timestamp (its time index's last entry).
    static func ensureIndexes(_ directory: String, baseOffset: Int64, logSize: Int64,
                                      configuration: LogConfiguration) throws(LogError) -> Int64? {
        if let offsets = try? File.openForReading(offsetIndexPath(directory, baseOffset)).readAll(),
           let times = try? File.openForReading(timeIndexPath(directory, baseOffset)).readAll(),
           let index = SegmentIndex.parse(offsetBytes: offsets, timeBytes: times, logSize: logSize),
           logSize == 0 || !times.isEmpty {
            return index.maxTimestamp
        }
        let scan = try scanSegment(directory, baseOffset: baseOffset, expectedBase: nil, verify: false, configuration: configuration)
        try writeIndexFiles(directory, baseOffset: baseOffset, builder: scan.builder, sealing: true)
        return scan.builder.maxTimestamp
    }

    /// Writes a segment's index files whole. With `sealing`, adds the final time entry and fsyncs them.
    static func writeIndexFiles(_ directory: String, baseOffset: Int64, builder: SegmentIndexBuilder,
                                        sealing: Bool) throws(LogError) {
        var builder = builder
        if sealing { _ = builder.seal() }
        let index = builder.index
        let offsetFile = try File.openForWriting(offsetIndexPath(directory, baseOffset), create: true)
        try offsetFile.truncate(to: 0)
        try offsetFile.write(index.offsetBytes, at: 0)
        let timeFile = try File.openForWriting(timeIndexPath(directory, baseOffset), create: true)
        try timeFile.truncate(to: 0)
        try timeFile.write(index.timeBytes, at: 0)
        if sealing {
            try offsetFile.syncData()
            try timeFile.syncData()
        }
    }

    static func openActive(_ directory: String, baseOffset: Int64, size: Int64,
                                   builder: SegmentIndexBuilder) throws(LogError) -> ActiveSegment {
        try writeIndexFiles(directory, baseOffset: baseOffset, builder: builder, sealing: false)
        return ActiveSegment(
            baseOffset: baseOffset,
            log: try File.openForWriting(logPath(directory, baseOffset)),
            offsetIndex: try File.openForWriting(offsetIndexPath(directory, baseOffset)),
            timeIndex: try File.openForWriting(timeIndexPath(directory, baseOffset)),
            size: size, indexBuilder: builder)
    }
}
