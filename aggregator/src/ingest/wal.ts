// Write-ahead log of accepted batches (--data-dir): a batch is appended before it is
// acknowledged, and replayed on start, so an aggregator restart neither loses what it
// acknowledged nor double counts what an agent replays (the dedup state is rebuilt too).
//
// On disk: DIR/ingest-<16-digit counter>.wal segments, replayed in counter order. Record:
// 4-byte big-endian length, then the ReportRequest as protobuf. Only the newest segment is
// appended to; past segmentBytes a new one starts. Bounded two ways, whole segments at a
// time (the oldest first):
//  - retention: a closed segment whose last append is older than the store's retention
//    holds only flows the store would evict anyway at replay;
//  - size: past maxBytes in all, the oldest segments go (acknowledged history is lost,
//    counted and logged: the disk bound wins over the replay's completeness).
// A deleted segment also takes its batches' (agent, sequence) dedup entries, which is safe:
// an agent resends only unacknowledged batches, and these were acknowledged.
//
// A torn record at the end of a segment (killed mid-write, so never acknowledged) is cut
// off on open. The legacy single DIR/ingest.wal (before segments) is replayed first and
// then kept, read-only, as the oldest segment until retention or size deletes it.
//
// Durability: write(2) only, no fsync (as before segments): a batch survives the process
// being killed, not the machine losing power. An fsync per batch would cap ingest at the
// disk's sync rate.

import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PlainsightError } from '../../../agent/src/errors.js';

/** The single log file of versions before segments. */
export const LEGACY_WAL_FILE = 'ingest.wal';
const SEGMENT_RE = /^ingest-(\d{16})\.wal$/;
export const segmentName = (n: number): string => `ingest-${String(n).padStart(16, '0')}.wal`;

export const DEFAULT_WAL_MAX_BYTES = 1 << 30;
/** Segments between these sizes: an eighth of the bound, so deletion frees it in steps of ~12%. */
const MIN_SEGMENT_BYTES = 64 << 10;
const MAX_SEGMENT_BYTES = 16 << 20;
/** Replay reads this much at a time (a record larger than it is read whole). */
const READ_CHUNK = 8 << 20;

export type DeleteReason = 'retention' | 'size';

export interface WalOptions {
  /** All segments together stay at or below this (plus at most one record). */
  maxBytes?: number;
  /** A new segment starts when the newest reaches this. Default: maxBytes/8 within [64 KiB, 16 MiB]. */
  segmentBytes?: number;
  /** Segments whose last append is older than this are deleted (the store's retention). */
  retentionMs: number;
  /** Whole segments deleted (for metrics and logs). */
  onDelete?: (reason: DeleteReason, segments: number, bytes: number) => void;
  now?: () => number;
}

export interface ReplayStats {
  segments: number;
  records: number;
  bytes: number;
  /** Bytes cut off torn segment ends. */
  tornBytes: number;
  /** Segments deleted before replay (past retention or the size bound). */
  deleted: { retention: number; size: number };
  ms: number;
}

interface Segment {
  path: string;
  /** Counter in its name; -1: the legacy ingest.wal. */
  n: number;
  bytes: number;
  /** Time of its last append (file mtime for segments found on open). */
  lastMs: number;
}

/** The ingest log cannot be written (disk full, read-only, permissions): the batch is refused. */
export class WalWriteError extends PlainsightError {
  constructor(dir: string, cause: unknown) {
    const errno = (cause as NodeJS.ErrnoException)?.code;
    const why = errno === 'ENOSPC' ? 'the disk is full' : errno === 'EROFS' ? 'the filesystem is read-only' : errno === 'EACCES' || errno === 'EPERM' ? 'permission denied' : (cause as Error)?.message;
    super('PLAINSIGHT_ERR_AGG_WAL_WRITE', `cannot write the ingest log in ${dir} (${why}): the batch is refused, the agent resends it`, { cause });
  }
}

export class Wal {
  /** Oldest first; the last one is open for appending. */
  private readonly segments: Segment[];
  private fd: number;
  private totalBytes: number;
  /** A failed append left bytes past the newest segment's end that could not be cut yet. */
  private tail = false;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly now: () => number;
  replayStats: ReplayStats = { segments: 0, records: 0, bytes: 0, tornBytes: 0, deleted: { retention: 0, size: 0 }, ms: 0 };

  private constructor(
    private readonly dir: string,
    private readonly opts: WalOptions,
    segments: Segment[],
  ) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_WAL_MAX_BYTES;
    this.segmentBytes = opts.segmentBytes ?? Math.min(MAX_SEGMENT_BYTES, Math.max(MIN_SEGMENT_BYTES, Math.floor(this.maxBytes / 8)));
    this.now = opts.now ?? Date.now;
    this.segments = segments;
    this.totalBytes = segments.reduce((a, s) => a + s.bytes, 0);
    this.fd = -1;
  }

  /**
   * Opens (creating) the log in `dir`: deletes what is past retention or the size bound,
   * hands every complete record of the rest to `replay` in order, cuts torn ends, and
   * continues in the newest segment (a new one if that is full or the legacy file).
   */
  static open(dir: string, opts: WalOptions, replay: (record: Buffer) => void): Wal {
    const t0 = performance.now();
    mkdirSync(dir, { recursive: true });
    const found: Segment[] = [];
    for (const name of readdirSync(dir)) {
      const m = SEGMENT_RE.exec(name);
      if (!m && name !== LEGACY_WAL_FILE) continue;
      const path = join(dir, name);
      const st = statSync(path);
      if (st.isFile()) found.push({ path, n: m ? Number(m[1]) : -1, bytes: st.size, lastMs: st.mtimeMs });
    }
    found.sort((a, b) => a.n - b.n);
    const wal = new Wal(dir, opts, found);
    // Before replay: what would be deleted anyway is not worth reading.
    wal.deleteOld(true);

    const stats = wal.replayStats;
    for (const s of wal.segments) {
      const fd = openSync(s.path, 'r+');
      try {
        const valid = readRecords(fd, s.bytes, (rec) => {
          stats.records++;
          replay(rec);
        });
        if (valid < s.bytes) {
          ftruncateSync(fd, valid);
          stats.tornBytes += s.bytes - valid;
          wal.totalBytes -= s.bytes - valid;
          s.bytes = valid;
        }
      } finally {
        closeSync(fd);
      }
      stats.segments++;
      stats.bytes += s.bytes;
    }
    const last = wal.segments.at(-1);
    if (last && last.n >= 0 && last.bytes < wal.segmentBytes) wal.fd = openSync(last.path, 'r+');
    else wal.startSegment((last?.n ?? 0) + 1);
    stats.ms = performance.now() - t0;
    return wal;
  }

  /** Bytes of all segments on disk. */
  get bytes(): number {
    return this.totalBytes;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** Appends one record; a WalWriteError leaves the log as it was (a partial write is cut). */
  append(record: Buffer): void {
    let cur = this.segments.at(-1)!;
    if (this.tail) {
      // Leftovers of a partial write must go before a shorter record lands on top of them.
      try {
        ftruncateSync(this.fd, cur.bytes);
      } catch (cause) {
        throw new WalWriteError(this.dir, cause);
      }
      this.tail = false;
    }
    if (cur.bytes >= this.segmentBytes) {
      this.startSegment(cur.n + 1);
      cur = this.segments.at(-1)!;
    }
    const buf = Buffer.allocUnsafe(4 + record.length);
    buf.writeUInt32BE(record.length, 0);
    record.copy(buf, 4);
    let done = 0;
    try {
      while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done, cur.bytes + done);
    } catch (cause) {
      if (done > 0) {
        try {
          ftruncateSync(this.fd, cur.bytes);
        } catch {
          this.tail = true; // cut before the next append, or on the next open (a torn record)
        }
      }
      throw new WalWriteError(this.dir, cause);
    }
    cur.bytes += buf.length;
    cur.lastMs = this.now();
    this.totalBytes += buf.length;
    if (this.totalBytes > this.maxBytes) {
      try {
        this.deleteOld(false);
      } catch {
        // The record is written: its batch is accepted. prune() (the sweep) retries and logs.
      }
    }
  }

  /** Deletes closed segments past retention (the server calls it on its sweep timer). */
  prune(): void {
    this.deleteOld(false);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /**
   * Oldest first: past retention, then while over the size bound. `opening`: nothing is
   * open yet, so every segment may go; otherwise the one being appended to stays.
   */
  private deleteOld(opening: boolean): void {
    const keep = opening ? 0 : 1;
    const cutoff = this.now() - this.opts.retentionMs;
    const gone = { retention: { n: 0, bytes: 0 }, size: { n: 0, bytes: 0 } };
    while (this.segments.length > keep) {
      const s = this.segments[0]!;
      const reason: DeleteReason | undefined = s.lastMs < cutoff ? 'retention' : this.totalBytes > this.maxBytes ? 'size' : undefined;
      if (!reason) break;
      try {
        unlinkSync(s.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      this.segments.shift();
      this.totalBytes -= s.bytes;
      gone[reason].n++;
      gone[reason].bytes += s.bytes;
    }
    for (const reason of ['retention', 'size'] as const) {
      if (gone[reason].n === 0) continue;
      if (opening) this.replayStats.deleted[reason] += gone[reason].n;
      this.opts.onDelete?.(reason, gone[reason].n, gone[reason].bytes);
    }
  }

  private startSegment(n: number): void {
    const path = join(this.dir, segmentName(n));
    let fd: number;
    try {
      // 'w': a leftover empty or foreign file of that name is ours to reuse.
      fd = openSync(path, 'w');
    } catch (cause) {
      throw new WalWriteError(this.dir, cause);
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = fd;
    this.segments.push({ path, n, bytes: 0, lastMs: this.now() });
  }
}

/**
 * Hands each complete record of the file (`size` bytes) to `replay`, reading in chunks;
 * returns where the complete records end (less than `size`: a torn end). Records are views
 * into the chunk: the decoder copies what it keeps (strings, numbers).
 */
function readRecords(fd: number, size: number, replay: (record: Buffer) => void): number {
  let chunk = Buffer.alloc(0);
  let chunkAt = 0; // file offset of chunk[0]
  let readAt = 0;
  for (;;) {
    let p = 0;
    while (chunk.length - p >= 4) {
      const len = chunk.readUInt32BE(p);
      if (chunkAt + p + 4 + len > size) return chunkAt + p; // runs past the end: torn
      if (chunk.length - p < 4 + len) break;
      replay(chunk.subarray(p + 4, p + 4 + len));
      p += 4 + len;
    }
    if (readAt >= size) return chunkAt + p; // fewer than 4 bytes left: torn
    const left = chunk.subarray(p);
    const need = left.length >= 4 ? 4 + left.readUInt32BE(0) - left.length : 0;
    const n = Math.min(size - readAt, Math.max(READ_CHUNK, need));
    const next = Buffer.allocUnsafe(left.length + n);
    left.copy(next, 0);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, next, left.length + got, n - got, readAt + got);
      if (r === 0) throw new Error(`the ingest log shrank while being read (at byte ${readAt + got} of ${size})`);
      got += r;
    }
    chunkAt += p;
    readAt += n;
    chunk = next;
  }
}

/** The segment files of `dir` (the legacy file first), oldest first, with their sizes. */
export function listSegments(dir: string): { name: string; bytes: number }[] {
  return readdirSync(dir)
    .filter((n) => SEGMENT_RE.test(n) || n === LEGACY_WAL_FILE)
    .sort((a, b) => (a === LEGACY_WAL_FILE ? -1 : b === LEGACY_WAL_FILE ? 1 : a < b ? -1 : 1))
    .map((name) => ({ name, bytes: statSync(join(dir, name)).size }));
}
