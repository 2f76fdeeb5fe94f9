// Timing and output parsing for the tools under comparison.
import { spawn, execFileSync } from 'node:child_process';
import { openSync, closeSync, readFileSync, rmSync, existsSync } from 'node:fs';

const running = new Set();

/** Kill whatever timed command is running (SIGINT handler). */
export function killRunning() {
  for (const c of running) { try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } }
}

/**
 * Run `cmd args` under /usr/bin/time; stdout goes to `stdoutPath` (e.g. /dev/null),
 * stderr to `stderrPath`. Returns wall seconds (measured here with hrtime), and
 * user/sys CPU seconds and max RSS (KiB) of the command as reported by getrusage via time(1).
 */
export async function timeCommand(cmd, args, { stdoutPath, stderrPath, timeFile }) {
  rmSync(timeFile, { force: true });
  const out = openSync(stdoutPath, 'w');
  const err = openSync(stderrPath, 'w');
  const t0 = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, cmd, ...args],
    { stdio: ['ignore', out, err], detached: true });
  running.add(child);
  const code = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (c, s) => resolve(s ? 128 : c));
  }).finally(() => { running.delete(child); closeSync(out); closeSync(err); });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const tline = existsSync(timeFile) ? readFileSync(timeFile, 'utf8').trim().split('\n').pop() : '';
  const [, user, sys, maxRss] = tline.split(/\s+/).map(Number);
  return { code, wall, user, sys, cpu: user + sys, maxRssKiB: maxRss };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Packet count: capinfos if installed, else our own walk of the pcap/pcapng records. */
export function countPackets(file) {
  try {
    const out = execFileSync('capinfos', ['-M', '-c', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const m = out.match(/Number of packets:\s+(\d+)/);
    if (m) return { packets: Number(m[1]), by: 'capinfos -M -c' };
  } catch { /* fall through */ }
  return { packets: countPacketsJs(readFileSync(file)), by: 'own pcap walk' };
}

function countPacketsJs(buf) {
  const magic = buf.readUInt32LE(0);
  let n = 0;
  if (magic === 0x0a0d0d0a) { // pcapng: count EPB (6), SPB (3), obsolete PB (2)
    let off = 0;
    let le = true;
    while (off + 12 <= buf.length) {
      const type = le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
      if (type === 0x0a0d0d0a) le = buf.readUInt32LE(off + 8) === 0x1a2b3c4d;
      const len = le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
      if (type === 6 || type === 3 || type === 2) n++;
      if (len < 12) break;
      off += len;
    }
    return n;
  }
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && ![0xd4c3b2a1, 0x4d3cb2a1].includes(magic)) throw new Error('not a pcap/pcapng file');
  let off = 24;
  while (off + 16 <= buf.length) {
    off += 16 + (le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8));
    n++;
  }
  return n;
}

// ---- per-tool "flows found" parsers (sanity check only) ----

export function parsePlainsight(text) {
  const j = JSON.parse(text);
  const s = j.summary ?? {};
  const byTransport = {};
  for (const f of j.flows ?? []) byTransport[f.transport] = (byTransport[f.transport] ?? 0) + 1;
  return { flows: s.flows ?? j.flows?.length, tcpFlows: byTransport.tcp ?? 0, packets: s.packets, byVerdict: s.byVerdict, byTransport };
}

export function parseTshark(text) {
  // `-z conv,tcp`: one line per TCP conversation, "a:port <-> b:port  ...".
  const n = text.split('\n').filter((l) => l.includes('<->')).length;
  return { flows: n, tcpFlows: n };
}

export function parseNdpi(text) {
  const unique = Number(text.match(/Unique flows:\s+(\d+)/)?.[1]);
  const packets = Number(text.match(/IP packets:\s+\d+\s+of (\d+) packets total/)?.[1]);
  const ndpiTime = text.match(/Packet Processing Time:\s+(.*)/)?.[1]?.trim();
  const detected = {};
  const sect = text.split('Detected protocols:')[1]?.split('\n\n')[0] ?? '';
  for (const m of sect.matchAll(/^\s+(\S+)\s+packets:\s+(\d+)\s+bytes:\s+(\d+)\s+flows:\s+(\d+)/gm)) detected[m[1]] = Number(m[4]);
  return { flows: unique, packets, detected, packetProcessingTime: ndpiTime };
}
