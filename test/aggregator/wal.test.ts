// The ingest log (aggregator/src/ingest/wal.ts) on a real filesystem: segments rotate and
// replay in order; whole old segments are deleted by retention and by the size bound, each
// deletion counted; a torn last record is cut and appending goes on; the legacy single
// ingest.wal is replayed first and kept as the oldest segment; on a full disk (a 1 MiB
// tmpfs, root only) an append fails whole, leaves no partial record, and works again once
// there is space.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LEGACY_WAL_FILE, Wal, WalWriteError, listSegments, segmentName, type DeleteReason, type WalOptions } from '../../aggregator/src/ingest/wal.js';
import { tempDir } from '../lab/aggregator.js';
import { parseBytes } from '../../aggregator/src/config.js';

/** Record i: recognisable, `size` bytes. */
const rec = (i: number, size = 100): Buffer => {
  const b = Buffer.alloc(size, i % 251);
  b.writeUInt32BE(i, 0);
  return b;
};
const id = (r: Buffer): number => r.readUInt32BE(0);

/** Opens the log, returning the record ids replayed (in order) and the deletions reported. */
function open(dir: string, opts: Partial<WalOptions> = {}): { wal: Wal; ids: number[]; deleted: Record<DeleteReason, number> } {
  const ids: number[] = [];
  const deleted = { retention: 0, size: 0 };
  const wal = Wal.open(dir, { retentionMs: 3_600_000, ...opts, onDelete: (reason, n) => (deleted[reason] += n) }, (r) => ids.push(id(r)));
  return { wal, ids, deleted };
}
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const onDisk = (dir: string): number => listSegments(dir).reduce((a, s) => a + s.bytes, 0);

t.test('segments rotate at segmentBytes and replay in order across them', async (t) => {
  const dir = tempDir(t, 'ps-wal-rot-');
  const { wal, ids } = open(dir, { segmentBytes: 1000 });
  t.same(ids, [], 'empty log');
  for (let i = 0; i < 250; i++) wal.append(rec(i));
  wal.close();
  const segs = listSegments(dir);
  t.ok(segs.length >= 24, `rotated into ${segs.length} segments`);
  t.same(segs[0]!.name, segmentName(1), 'the first segment is ingest-0000000000000001.wal');
  for (const s of segs) t.ok(s.bytes <= 1000 + 104, `${s.name}: ${s.bytes} B ≤ segment size + one record`);
  t.equal(onDisk(dir), 250 * 104, 'every record on disk once');
  const again = open(dir, { segmentBytes: 1000 });
  t.same(again.ids, range(0, 250), '250 records replayed in append order');
  t.equal(again.wal.replayStats.segments, segs.length);
  again.wal.append(rec(250));
  again.wal.close();
  t.same(open(dir, { segmentBytes: 1000 }).ids, range(0, 251), 'appending after a reopen continues the order');
});

t.test('the size bound deletes the oldest whole segments, counted', async (t) => {
  const dir = tempDir(t, 'ps-wal-size-');
  const { wal, deleted } = open(dir, { maxBytes: 4000, segmentBytes: 1000 });
  let maxSeen = 0;
  let mismatches = 0;
  for (let i = 0; i < 500; i++) {
    wal.append(rec(i));
    const disk = onDisk(dir);
    maxSeen = Math.max(maxSeen, disk);
    if (wal.bytes !== disk) mismatches++;
  }
  wal.close();
  t.equal(mismatches, 0, 'wal.bytes (the gauge) is what is on disk after every append');
  t.ok(maxSeen <= 4000, `the disk never held more than the bound (max ${maxSeen} B ≤ 4000)`);
  t.ok(deleted.size >= 40, `${deleted.size} segments deleted for size`);
  t.equal(deleted.retention, 0, 'none for retention');
  const r = open(dir, { maxBytes: 4000, segmentBytes: 1000 });
  t.ok(r.ids.length > 20, `the tail replayed (${r.ids.length} records)`);
  t.same(r.ids, range(500 - r.ids.length, 500), 'the replayed tail is contiguous and ends with the newest record');
  r.wal.close();

  const smaller = open(dir, { maxBytes: 2000, segmentBytes: 1000 });
  t.ok(smaller.deleted.size >= 1, 'a lower bound on restart deletes before replay');
  t.ok(smaller.wal.bytes <= 2000, `then ${smaller.wal.bytes} B ≤ 2000`);
  t.same(smaller.ids, range(500 - smaller.ids.length, 500), 'and replays only the newest');
  smaller.wal.close();
});

t.test('retention deletes closed segments whose last append is older, at runtime and on open', async (t) => {
  const dir = tempDir(t, 'ps-wal-ret-');
  let now = 1_000_000_000_000;
  const { wal, deleted } = open(dir, { segmentBytes: 1000, retentionMs: 60_000, now: () => now });
  for (let i = 0; i < 30; i++) wal.append(rec(i)); // 3+ segments, "old"
  now += 50_000;
  for (let i = 30; i < 60; i++) wal.append(rec(i)); // newer ones
  const before = wal.segmentCount;
  now += 20_000; // the first batch of segments is now 70 s old, the second 20 s
  wal.prune();
  t.ok(deleted.retention >= 2, `${deleted.retention} old segments deleted for retention`);
  t.equal(deleted.size, 0);
  t.ok(wal.segmentCount < before, `${before} → ${wal.segmentCount} segments`);
  now += 3_600_000;
  wal.prune();
  t.equal(wal.segmentCount, 1, 'the segment being appended to is kept, however old');
  wal.close();

  // On open: file mtimes stand for the last append; stale segments are not even read.
  const dir2 = tempDir(t, 'ps-wal-ret2-');
  const w2 = open(dir2, { segmentBytes: 1000 }).wal;
  for (let i = 0; i < 40; i++) w2.append(rec(i));
  w2.close();
  const segs = listSegments(dir2);
  const old = (Date.now() - 2 * 3_600_000) / 1000;
  for (const s of segs.slice(0, 2)) utimesSync(join(dir2, s.name), old, old);
  const r = open(dir2, { segmentBytes: 1000 });
  t.equal(r.deleted.retention, 2, 'the two stale segments deleted on open');
  t.equal(r.wal.replayStats.deleted.retention, 2);
  t.ok(r.ids.length > 0 && r.ids[0]! > 0, `replay starts after them (record ${r.ids[0]})`);
  t.same(r.ids, range(r.ids[0]!, 40), 'the rest in order');
  const left = listSegments(dir2).map((s) => s.name);
  t.ok(segs.slice(0, 2).every((s) => !left.includes(s.name)) && segs.slice(2).every((s) => left.includes(s.name)), 'their files are gone, the others kept');
  r.wal.close();
});

t.test('a torn last record is cut off, and appending goes on after it', async (t) => {
  const dir = tempDir(t, 'ps-wal-torn-');
  const { wal } = open(dir, { segmentBytes: 1000 });
  for (let i = 0; i < 25; i++) wal.append(rec(i));
  wal.close();
  const last = join(dir, listSegments(dir).at(-1)!.name);
  const good = statSync(last).size;
  // A length saying 100, then only 10 bytes: killed mid-write.
  const torn = Buffer.alloc(14);
  torn.writeUInt32BE(100, 0);
  appendFileSync(last, torn);
  const r = open(dir, { segmentBytes: 1000 });
  t.same(r.ids, range(0, 25), 'every complete record replayed');
  t.equal(r.wal.replayStats.tornBytes, 14, '14 torn bytes reported');
  t.equal(statSync(last).size, good, 'the segment cut back to its last complete record');
  r.wal.append(rec(25));
  r.wal.close();
  t.same(open(dir, { segmentBytes: 1000 }).ids, range(0, 26), 'a record appended after the cut replays after the rest');

  // A garbage length (far past the end) and a lone partial header are torn too.
  const dir2 = tempDir(t, 'ps-wal-torn2-');
  const w2 = open(dir2).wal;
  w2.append(rec(1));
  w2.close();
  const f = join(dir2, listSegments(dir2)[0]!.name);
  appendFileSync(f, Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  const r2 = open(dir2);
  t.same(r2.ids, [1], 'a huge length is a torn end, not an allocation');
  r2.wal.close();
  appendFileSync(f, Buffer.from([0, 0]));
  const r3 = open(dir2);
  t.same(r3.ids, [1], 'two bytes of a header: torn');
  t.equal(r3.wal.replayStats.tornBytes, 2);
  r3.wal.close();
});

t.test('records larger than a read chunk replay whole', async (t) => {
  const dir = tempDir(t, 'ps-wal-big-');
  const { wal } = open(dir);
  const sizes = [5, 9 << 20, 10, 3 << 20, 7];
  sizes.forEach((s, i) => wal.append(rec(i, Math.max(4, s))));
  wal.close();
  const lens: number[] = [];
  const w = Wal.open(dir, { retentionMs: 3_600_000 }, (r) => lens.push(r.length));
  w.close();
  t.same(lens, sizes.map((s) => Math.max(4, s)), 'a 9 MiB record between small ones, all whole, in order');
});

t.test('the legacy single ingest.wal is replayed first and kept as the oldest segment', async (t) => {
  const dir = tempDir(t, 'ps-wal-legacy-');
  // The old format: the same records in one file.
  writeFileSync(
    join(dir, LEGACY_WAL_FILE),
    Buffer.concat(range(0, 30).map((i) => Buffer.concat([Buffer.from([0, 0, 0, 100]), rec(i)]))),
  );
  const { wal, ids } = open(dir, { segmentBytes: 1000 });
  t.same(ids, range(0, 30), 'its records replayed');
  for (let i = 30; i < 45; i++) wal.append(rec(i));
  wal.close();
  const names = listSegments(dir).map((s) => s.name);
  t.equal(names[0], LEGACY_WAL_FILE, 'kept, never appended to');
  t.equal(statSync(join(dir, LEGACY_WAL_FILE)).size, 30 * 104, 'unchanged');
  t.equal(names[1], segmentName(0), 'new records in segments after it');
  t.same(open(dir, { segmentBytes: 1000 }).ids, range(0, 45), 'reopened: legacy first, then the segments, in order');

  const old = (Date.now() - 2 * 3_600_000) / 1000;
  utimesSync(join(dir, LEGACY_WAL_FILE), old, old);
  const r = open(dir, { segmentBytes: 1000 });
  t.equal(r.deleted.retention, 1, 'deleted once past retention');
  t.same(r.ids, range(30, 45));
  t.notOk(readdirSync(dir).includes(LEGACY_WAL_FILE), 'gone');
  r.wal.close();
});

const notRoot = process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs';
t.test('disk full (1 MiB tmpfs): the append fails whole, and works again once there is space', { skip: notRoot }, async (t) => {
  const dir = tempDir(t, 'ps-wal-full-');
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  t.teardown(() => execFileSync('umount', ['-l', mnt]));
  const data = join(mnt, 'data');
  const { wal } = open(data);
  let ok = 0;
  let err: unknown;
  for (let i = 0; i < 2000 && !err; i++) {
    try {
      wal.append(rec(i, 3000));
      ok++;
    } catch (e) {
      err = e;
    }
  }
  t.ok(err instanceof WalWriteError, `append refused after ${ok} records: ${(err as Error).message}`);
  t.equal((err as WalWriteError).code, 'PLAINSIGHT_ERR_AGG_WAL_WRITE');
  t.match((err as Error).message, /disk is full/);
  t.equal(onDisk(data), ok * 3004, 'no partial record left behind');
  t.equal(wal.bytes, ok * 3004);
  let again: unknown;
  try {
    wal.append(rec(ok, 3000));
  } catch (e) {
    again = e;
  }
  t.ok(again instanceof WalWriteError, 'still full: refused again');
  // Space back (the volume grown).
  execFileSync('mount', ['-o', 'remount,size=2m', mnt]);
  wal.append(rec(ok, 3000));
  wal.close();
  const r = open(data);
  t.same(r.ids, range(0, ok + 1), 'every accepted record replays, the refused ones never were');
  r.wal.close();
  rmSync(data, { recursive: true, force: true });
});

t.test('--wal-max-bytes sizes parse as powers of 1024', async (t) => {
  t.equal(parseBytes('4MiB'), 4 << 20);
  t.equal(parseBytes('512k'), 512 << 10);
  t.equal(parseBytes('1GiB'), 1 << 30);
  t.equal(parseBytes('1048576'), 1 << 20);
  for (const bad of ['', 'MiB', '-1M', '1.5G', '4 TB', '0']) t.equal(parseBytes(bad), undefined, `"${bad}" refused`);
});
