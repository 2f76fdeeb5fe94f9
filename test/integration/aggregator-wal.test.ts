// The aggregator's ingest log (--data-dir) with the real process and the real exporter:
//  - bounded: --wal-max-bytes 4MiB under ~20 MiB of ingest keeps the directory within the
//    bound (sampled throughout), deletes whole segments and counts them; a restart replays
//    only the tail, and a replayed (or older, deleted) batch sent again is still a duplicate;
//  - disk full: the data dir on a 1 MiB tmpfs, filled up: batches are refused (not acked,
//    logged with PLAINSIGHT_ERR_AGG_WAL_WRITE), queries and /metrics keep answering, and once
//    space is back the exporter's retries land, every flow exactly once, and replay after a
//    restart gives the same.
// Flows are the classifier's output on a real capture (one HTTP connection in the lab),
// replicated with distinct client addresses.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { cliMissingReason, type FlowJson } from '../lab/plainsight.js';
import { AggregatorProcess, realHttpFlow, exportFlows, metricSum, tempDir } from '../lab/aggregator.js';
import { Exporter, type ExportFlow } from '../../agent/src/export/index.js';
import { proto } from '../../proto/gen/index.js';
import type { ReportResponse__Output } from '../../proto/gen/types/plainsight/v1/ReportResponse.js';

const skip = labSkipReason() ?? cliMissingReason();
const MiB = 1 << 20;

/** Number of stored flows, through ListFlows pages. */
async function countFlows(address: string): Promise<number> {
  const c = new proto.plainsight.v1.FlowService(address, grpc.credentials.createInsecure());
  try {
    let n = 0;
    let pageToken = '';
    do {
      const r = await new Promise<{ flows: unknown[]; nextPageToken: string }>((resolve, reject) =>
        c.ListFlows({ pageSize: 5000, pageToken }, { deadline: Date.now() + 20_000 }, (e, res) => (e || !res ? reject(e) : resolve(res))),
      );
      n += r.flows.length;
      pageToken = r.nextPageToken;
    } while (pageToken);
    return n;
  } finally {
    c.close();
  }
}

/** One empty batch as `agentId` with `sequence` on a fresh Report stream: its ack. */
function resend(address: string, agentId: string, sequence: number): Promise<ReportResponse__Output> {
  const c = new proto.plainsight.v1.IngestService(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = c.Report({ deadline: Date.now() + 10_000 });
    call.on('data', (r: ReportResponse__Output) => {
      resolve(r);
      call.end();
    });
    call.on('error', (e) => reject(e));
    call.on('end', () => c.close());
    call.write({ agentId, sequence, nodeName: 'node-w' });
  });
}

/** Bytes of the ingest log files in `dir` (files may vanish while listed). */
function walBytesOnDisk(dir: string): number {
  let sum = 0;
  for (const n of readdirSync(dir)) {
    if (!n.endsWith('.wal')) continue;
    try {
      sum += statSync(join(dir, n)).size;
    } catch {
      /* deleted meanwhile */
    }
  }
  return sum;
}

/** plainsight_flows_total once it reaches `want` (or what it is after 15 s). */
async function flowsTotal(agg: AggregatorProcess, want: number): Promise<number> {
  const deadline = Date.now() + 15_000;
  let v = 0;
  while ((v = metricSum(await agg.metrics(), 'plainsight_flows_total')) < want && Date.now() < deadline) await sleep(250);
  return v;
}

const logged = (agg: AggregatorProcess, msg: string) => agg.logs().filter((l) => l.msg === msg);

t.test('aggregator ingest log', { skip }, async (t) => {
  const lab = await Lab.open(t, 'aggw');
  const real = await realHttpFlow(t, lab);
  if (!real) return;
  const { base, client, server } = real;
  const pods = [
    { name: 'client', namespace: 'lab', workload: 'client', ips: [client.ip4] },
    { name: 'server', namespace: 'lab', workload: 'server', ips: [server.ip4] },
  ];
  /** Flows `from`..`from+n-1`, each its own connection (client address from the index). */
  const many = (n: number, from: number, node: string): ExportFlow[] => {
    const fs: FlowJson[] = Array.from({ length: n }, (_, i) => {
      const k = from + i;
      return { ...base, client: { ip: `198.19.${(k >> 8) & 255}.${k & 255}`, port: base.client.port + (k >> 16) } };
    });
    return exportFlows(fs, node).map((f, i) => ({ ...f, flowId: `${node}-${from + i}` }));
  };

  t.test('--wal-max-bytes 4MiB under ~20 MiB of ingest: the directory stays bounded, a restart replays the tail, dedup holds', async (t) => {
    const dir = tempDir(t, 'ps-wal-bound-');
    const args = ['--data-dir', dir, '--wal-max-bytes', '4MiB'];
    const agg = await AggregatorProcess.start(t, args);
    const ex = new Exporter({ address: agg.address, node: 'node-w', backoff: { initialMs: 50, maxMs: 500 } });
    t.teardown(() => ex.close(0));
    let maxDisk = 0;
    const sampler = setInterval(() => (maxDisk = Math.max(maxDisk, walBytesOnDisk(dir))), 20);
    t.teardown(() => clearInterval(sampler));

    const PER = 1000;
    let batches = 0;
    const push = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++, batches++) {
        ex.enqueue(many(PER, batches * PER, 'node-w'), pods);
        if (batches % 8 === 7) t.ok(await ex.flushed(60_000), `batch ${batches} acknowledged`);
      }
      t.ok(await ex.flushed(60_000), `all ${batches} batches acknowledged`);
    };
    // How big one batch is in the log: from the gauge, before anything is deleted.
    await push(4);
    const probe = metricSum(await agg.metrics(), 'plainsight_aggregator_wal_bytes');
    t.ok(probe > 0, `4 batches of ${PER} flows: ${probe} B in the log`);
    const perBatch = probe / 4;
    const target = Math.ceil((20 * MiB) / perBatch);
    const t0 = Date.now();
    await push(target - 4);
    const pushedMs = Date.now() - t0;
    clearInterval(sampler);
    maxDisk = Math.max(maxDisk, walBytesOnDisk(dir));
    const written = batches * perBatch;
    t.comment(`${batches} batches, ~${(written / MiB).toFixed(1)} MiB through the log in ${pushedMs} ms; largest directory seen ${(maxDisk / MiB).toFixed(2)} MiB`);
    t.ok(written >= 19 * MiB, `~${(written / MiB).toFixed(1)} MiB written`);
    const segment = (4 * MiB) / 8;
    t.ok(maxDisk <= 4 * MiB + segment, `the directory never held more than the bound + one segment (${maxDisk} ≤ ${4 * MiB + segment})`);
    const text = await agg.metrics();
    const deleted = metricSum(text, 'plainsight_aggregator_wal_segments_deleted_total', { reason: 'size' });
    t.ok(deleted >= 20, `${deleted} segments deleted for size`);
    t.equal(metricSum(text, 'plainsight_aggregator_wal_segments_deleted_total', { reason: 'retention' }), 0, 'none for retention (1h)');
    const gauge = metricSum(text, 'plainsight_aggregator_wal_bytes');
    t.equal(gauge, walBytesOnDisk(dir), `plainsight_aggregator_wal_bytes = what is on disk (${gauge})`);
    const warned = logged(agg, 'ingest log segments deleted');
    t.ok(warned.length > 0 && warned.every((l) => l.reason === 'size' && l.level === 40), `each deletion logged as a warning (${warned.length} lines)`);
    t.equal(warned.reduce((a, l) => a + Number(l.segments), 0), deleted, 'logged segments = counted segments');
    t.equal(await countFlows(agg.address), batches * PER, 'the running aggregator kept every flow (the store is not the log)');

    const { agentId, sequence: last } = ex.stats;
    await ex.close(0);
    t.equal(await agg.stop(), 0, 'stopped cleanly');
    const again = await AggregatorProcess.start(t, args);
    const replay = logged(again, 'replayed ingest log')[0];
    t.ok(replay, 'the restarted aggregator replayed its log');
    const replayed = Number(replay?.batches);
    t.ok(replayed > 0 && replayed < batches, `only the tail replayed: ${replayed} of ${batches} batches, ${replay?.bytes} B in ${replay?.ms} ms`);
    t.equal(await countFlows(again.address), replayed * PER, `the store holds exactly the tail's flows (${replayed} × ${PER})`);
    const flowsBefore = await flowsTotal(again, replayed * PER);
    t.equal(flowsBefore, replayed * PER, 'plainsight_flows_total after replay: the tail\'s flows');
    t.same(await resend(again.address, agentId, last), { sequence: last, duplicate: true }, `the last batch (replayed, #${last}) sent again: duplicate`);
    t.same(await resend(again.address, agentId, 1), { sequence: 1, duplicate: true }, 'the first batch (its segment deleted) sent again: still a duplicate (below the agent\'s acked floor)');
    t.equal(metricSum(await again.metrics(), 'plainsight_flows_total'), flowsBefore, 'nothing counted twice');
  });

  const notRoot = process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs';
  t.test('disk full (data dir on a 1 MiB tmpfs): batches refused and retried, queries served, nothing lost once space is back', { skip: notRoot }, async (t) => {
    const top = tempDir(t, 'ps-wal-full-');
    const mnt = join(top, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mnt]);
    // Lazy: the aggregator may still hold its segment open when this runs.
    t.teardown(() => execFileSync('umount', ['-l', mnt]));
    const data = join(mnt, 'data');
    const args = ['--data-dir', data];
    const agg = await AggregatorProcess.start(t, args);
    const ex = new Exporter({ address: agg.address, node: 'node-f', backoff: { initialMs: 100, maxMs: 500 } });
    t.teardown(() => ex.close(0));
    const PER = 50;
    let sent = 0;
    const send = (): void => {
      ex.enqueue(many(PER, 500_000 + sent * PER, 'node-f'), pods);
      sent++;
    };
    for (let i = 0; i < 5; i++) send();
    t.ok(await ex.flushed(20_000), '5 batches acknowledged while there is space');

    // Fill the filesystem to the last byte.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const block = Buffer.alloc(64 << 10, 1);
    let filled = 0;
    try {
      for (;;) filled += writeSync(fd, block);
    } catch (e) {
      t.equal((e as NodeJS.ErrnoException).code, 'ENOSPC', `tmpfs full after ${filled} filler bytes`);
    } finally {
      closeSync(fd);
    }
    for (let i = 0; i < 10; i++) send();
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && logged(agg, 'ingest log not writable: batches are refused until it is').length === 0) await sleep(100);
    const refusedLog = logged(agg, 'ingest log not writable: batches are refused until it is');
    t.equal(refusedLog.length, 1, 'logged once (a state change), not per batch');
    t.equal(refusedLog[0]?.code, 'PLAINSIGHT_ERR_AGG_WAL_WRITE', 'with its error code');
    t.match(String((refusedLog[0]?.err as { message?: string } | undefined)?.message), /disk is full/, 'saying the disk is full');
    await sleep(2000); // a few retries
    t.ok(ex.stats.queued > 0, `the exporter still holds ${ex.stats.queued} unacknowledged batches`);
    t.ok(ex.stats.reconnects >= 1, `and keeps retrying (${ex.stats.reconnects} reconnects)`);
    t.equal(ex.stats.droppedBatches, 0, 'nothing dropped');
    // The aggregator keeps serving while refusing.
    t.equal(await countFlows(agg.address), 5 * PER, 'ListFlows answers: the 5 accepted batches');
    const during = await agg.metrics();
    t.ok(metricSum(during, 'plainsight_aggregator_ingest_batches_total', { result: 'refused' }) >= 1, 'refusals counted (ingest_batches_total{result="refused"})');
    t.equal(metricSum(during, 'plainsight_flows_total'), 5 * PER, 'no refused flow counted');
    t.equal((await fetch(`http://127.0.0.1:${agg.metricsPort}/healthz`)).status, 200, '/healthz answers');

    rmSync(filler);
    t.ok(await ex.flushed(30_000), 'space back: every batch acknowledged');
    t.ok(logged(agg, 'ingest log writable again').length === 1, 'recovery logged');
    t.equal(await countFlows(agg.address), sent * PER, `${sent * PER} flows, each once`);
    // Flows to addresses outside the inventory wait IDENTITY_GRACE_MS before they count.
    t.equal(await flowsTotal(agg, sent * PER), sent * PER, 'plainsight_flows_total = what was sent');

    // The exporter's own batches included (an inventory-only one after a reconnect).
    const accepted = ex.stats.sequence;
    await ex.close(0);
    await agg.stop();
    const again = await AggregatorProcess.start(t, args);
    const replay = logged(again, 'replayed ingest log')[0];
    t.equal(Number(replay?.batches), accepted, `replay after a restart: all ${accepted} batches the exporter sent`);
    t.equal(logged(again, 'ingest log: a torn last record cut off (a write interrupted by a crash; never acknowledged)').length, 0, 'no torn record left by the refused writes');
    t.equal(await countFlows(again.address), sent * PER, 'the same flows');
  });
});
