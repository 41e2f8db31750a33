#!/usr/bin/env python3
"""Independent check: read every segment of a PresenceLog log with Kafka's own format reader.

kafka-python's MemoryRecords parses RecordBatch v2, validates each batch's CRC-32C and
decompresses LZ4 with the `lz4` package, exactly as a Kafka consumer would. This script
checks CRCs, that offsets run contiguously from each segment's base offset (its file name),
that timestamps lie within each batch's bounds, and prints one JSON summary on stdout:

    {"segments": N, "batches": N, "records": N, "first_offset": N, "last_offset": N,
     "keys_sha256": "...", "timestamps_sha256": "..."}

Usage: kafka_check.py LOG_DIR [--dump] [--allow-gaps]
  --dump prints "offset<TAB>timestamp<TAB>key" per record.
  --allow-gaps reads a log that `presence forget` rewrote, as a Kafka consumer reads a compacted
  partition: batches still run contiguously (each keeps its base offset and lastOffsetDelta), but
  record offsets inside a batch may skip (increasing, within the batch's range) and a batch may hold
  no record at all (codec none, as Kafka writes an emptied batch). The summary then adds "gaps", the
  number of offsets without a record.
Exit status 0 when everything checks out, 1 otherwise (the reason on stderr).
"""
import hashlib
import json
import os
import sys

from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 1
    log_dir = sys.argv[1]
    dump = "--dump" in sys.argv[2:]
    allow_gaps = "--allow-gaps" in sys.argv[2:]
    gaps = 0
    names = sorted(n for n in os.listdir(log_dir) if n.endswith(".log") and len(n) == 24)
    keys = hashlib.sha256()
    stamps = hashlib.sha256()
    batches = records = 0
    first_offset = None
    expected = None
    for name in names:
        base = int(name[:20])
        if expected is not None and base != expected:
            raise SystemExit(f"{name}: segment starts at {base}, previous ended at {expected}")
        expected = base
        with open(os.path.join(log_dir, name), "rb") as f:
            data = f.read()
        memory = MemoryRecords(data)
        while True:
            batch = memory.next_batch()
            if batch is None:
                break
            if not isinstance(batch, DefaultRecordBatch):
                raise SystemExit(f"{name}: batch is not RecordBatch v2")
            if not batch.validate_crc():
                raise SystemExit(f"{name}: batch at offset {batch.base_offset} has a bad CRC")
            if batch.compression_type != 3 and not (allow_gaps and batch.records_count == 0 and batch.compression_type == 0):
                raise SystemExit(f"{name}: batch at offset {batch.base_offset} uses codec {batch.compression_type}, expected LZ4 (3)")
            if batch.base_offset != expected:
                raise SystemExit(f"{name}: batch starts at {batch.base_offset}, expected {expected}")
            batches += 1
            count = 0
            batch_end = batch.base_offset + batch.last_offset_delta + 1
            for record in batch:
                if allow_gaps and expected < record.offset < batch_end:
                    gaps += record.offset - expected
                    expected = record.offset
                if record.offset != expected:
                    raise SystemExit(f"{name}: record offset {record.offset}, expected {expected}")
                if not (record.timestamp <= batch.max_timestamp):
                    raise SystemExit(f"{name}: record {record.offset} timestamp {record.timestamp} above the batch maximum {batch.max_timestamp}")
                if first_offset is None:
                    first_offset = record.offset
                keys.update((record.key or b"") + b"\n")
                stamps.update(b"%d\n" % record.timestamp)
                if dump:
                    print(f"{record.offset}\t{record.timestamp}\t{(record.key or b'').decode('utf-8')}")
                expected += 1
                count += 1
            if allow_gaps and expected < batch_end:
                gaps += batch_end - expected
                expected = batch_end
            if count != batch.records_count or (not allow_gaps and batch.last_offset_delta != count - 1):
                raise SystemExit(f"{name}: batch at {batch.base_offset} holds {count} records, header says {batch.records_count}")
            records += count
        if memory.valid_bytes() != len(data):
            raise SystemExit(f"{name}: {len(data) - memory.valid_bytes()} bytes after the last whole batch")
    summary = {
        "segments": len(names), "batches": batches, "records": records,
        "first_offset": first_offset, "last_offset": None if expected is None or records == 0 else expected - 1,
        **({"gaps": gaps} if allow_gaps else {}),
        "keys_sha256": keys.hexdigest(), "timestamps_sha256": stamps.hexdigest(),
    }
    if not dump:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
