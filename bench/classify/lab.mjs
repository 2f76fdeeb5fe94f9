// Two network namespaces joined by a veth pair (MTU 1500, offloads off), plus
// bookkeeping for every child process we start, so that everything can be torn
// down on success, on error, and on SIGINT/SIGTERM.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';

export const SERVER_IP = '198.18.0.1';
export const CLIENT_IP = '198.18.0.2';

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    const err = (e.stderr || '').trim() || e.message;
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed: ${err}`);
  }
}

export class Lab {
  constructor(log) {
    this.log = log;
    const id = randomBytes(3).toString('hex');
    this.serverNs = `ps-bench-${id}-srv`;
    this.clientNs = `ps-bench-${id}-cli`;
    // interface names are limited to 15 characters
    this.serverIf = `psb${id}s`;
    this.clientIf = `psb${id}c`;
    this.children = new Set();
    this.namespaces = [];
    this.tempPaths = []; // removed on teardown (certificates)
  }

  up() {
    for (const ns of [this.serverNs, this.clientNs]) {
      sh('ip', ['netns', 'add', ns]);
      this.namespaces.push(ns);
    }
    sh('ip', ['link', 'add', this.serverIf, 'mtu', '1500', 'netns', this.serverNs,
      'type', 'veth', 'peer', 'name', this.clientIf, 'mtu', '1500', 'netns', this.clientNs]);
    for (const [ns, dev, ip] of [[this.serverNs, this.serverIf, SERVER_IP], [this.clientNs, this.clientIf, CLIENT_IP]]) {
      sh('ip', ['-n', ns, 'addr', 'add', `${ip}/30`, 'dev', dev]);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      // Wire-sized packets: no segmentation/receive offloads (and real checksums: tx off).
      sh('ip', ['netns', 'exec', ns, 'ethtool', '-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off', 'tx', 'off']);
    }
    this.log(`lab: netns ${this.serverNs} (${SERVER_IP}, ${this.serverIf}) <-> ${this.clientNs} (${CLIENT_IP}, ${this.clientIf}), MTU 1500, offloads off`);
  }

  // Start `cmd args` inside netns `ns` in its own process group.
  spawnIn(ns, cmd, args, opts = {}) {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const entry = { child, name: `${cmd} (${ns})` };
    this.children.add(entry);
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      this.children.delete(entry);
      resolve({ code, signal });
    }));
    child.on('error', () => {}); // surfaced through 'exit'
    return child;
  }

  static async stop(child, signal = 'SIGTERM', graceMs = 3000) {
    if (child.exitCode !== null || child.signalCode !== null) return child.exited;
    try { process.kill(-child.pid, signal); } catch { /* gone */ }
    const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
    const r = await child.exited;
    clearTimeout(timer);
    return r;
  }

  async down() {
    await Promise.all([...this.children].map(({ child }) => Lab.stop(child)));
    this.downSync();
  }

  // Synchronous last resort (process 'exit' handler): SIGKILL children, delete namespaces.
  downSync() {
    for (const { child } of this.children) { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }
    this.children.clear();
    for (const ns of this.namespaces.splice(0)) {
      // deleting a netns deletes the veth end inside it, and with it the peer
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    for (const p of this.tempPaths.splice(0)) rmSync(p, { recursive: true, force: true });
  }
}

// Resolves with the first stdout line matching `re` (or rejects on exit/timeout).
export function waitForLine(child, stream, re, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs / 1000}s; output so far: ${buf.slice(-500)}`)), timeoutMs);
    const onData = (d) => {
      buf += d;
      const m = buf.match(re);
      if (m) { clearTimeout(timer); child[stream].off('data', onData); resolve(m); }
    };
    child[stream].on('data', onData);
    child.exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`${what} exited (${signal || code}) before it was ready: ${buf.slice(-500).trim()}`)); });
  });
}
