// Write-ahead log of accepted batches (--data-dir): a batch is appended before it is
// acknowledged, and replayed on start, so an aggregator restart neither loses what it
// acknowledged nor double counts what an agent replays (the dedup state is rebuilt too).
// Record: 4-byte big-endian length, then the ReportRequest as protobuf. A torn last record
// (killed mid-write, so never acknowledged) is cut off on open.

import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const WAL_FILE = 'ingest.wal';

export class Wal {
  private readonly fd: number;
  bytes = 0;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens (creating) DIR/ingest.wal; `replay` gets every complete record in order. */
  static open(dir: string, replay: (record: Buffer) => void): Wal {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, WAL_FILE);
    const fd = openSync(path, existsSync(path) ? 'r+' : 'w+');
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(4);
    let off = 0;
    while (off + 4 <= size) {
      readSync(fd, head, 0, 4, off);
      const len = head.readUInt32BE(0);
      if (off + 4 + len > size) break;
      const rec = Buffer.alloc(len);
      readSync(fd, rec, 0, len, off + 4);
      replay(rec);
      off += 4 + len;
    }
    if (off < size) ftruncateSync(fd, off);
    const w = new Wal(fd);
    w.bytes = off;
    return w;
  }

  append(record: Buffer): void {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(record.length, 0);
    const buf = Buffer.concat([head, record]);
    let done = 0;
    while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done, this.bytes + done);
    this.bytes += buf.length;
  }

  close(): void {
    closeSync(this.fd);
  }
}
