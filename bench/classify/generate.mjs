// Generates the benchmark capture with real software: node http/https servers and
// redis-server in one netns, node clients in another, tcpdump on the client veth.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, SERVER_IP, waitForLine } from './lab.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const MiB = 1 << 20;
const SNI = 'bench.plainsight.test';
const PORTS = { http: 8080, tls13: 8443, tls12: 8444, mtls: 8445, redis: 6379 };

export const PLANS = {
  // ≈150 MiB on the wire, ~7–8k short flows
  full: {
    short: { http: 3000, tls13: 1500, tls12: 1500, mtls: 400, redis: 1000 },
    concurrency: 8,
    bulk: [
      { proto: 'http', dir: 'get', bytes: 32 * MiB },
      { proto: 'tls13', dir: 'get', bytes: 32 * MiB },
      { proto: 'http', dir: 'post', bytes: 24 * MiB },
      { proto: 'tls12', dir: 'get', bytes: 32 * MiB },
      { proto: 'tls13', dir: 'post', bytes: 24 * MiB },
    ],
    minBytes: 100 * 1e6,
  },
  // for debugging the generator itself (a few MB)
  small: {
    short: { http: 100, tls13: 50, tls12: 50, mtls: 20, redis: 30 },
    concurrency: 4,
    bulk: [
      { proto: 'http', dir: 'get', bytes: 2 * MiB },
      { proto: 'tls13', dir: 'get', bytes: 2 * MiB },
      { proto: 'tls12', dir: 'post', bytes: 1 * MiB },
    ],
    minBytes: 1e6,
  },
};

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

// Throwaway CA, server cert (SAN bench.plainsight.test) and client cert, P-256.
function makeCerts(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=plainsight-bench-ca', '-days', '2'], dir);
  writeFileSync(join(dir, 'server.ext'), `subjectAltName=DNS:${SNI}\nextendedKeyUsage=serverAuth\n`);
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    openssl(['req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? SNI : 'plainsight-bench-client'}`], dir);
    openssl(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${who}.crt`, '-days', '2', '-extfile', `${who}.ext`], dir);
  }
}

/**
 * Generate `outFile` (written as outFile.partial, renamed on success) and its
 * metadata `outFile.json`. Returns the metadata.
 */
export async function generateCapture({ outFile, plan, log, lab: labHook }) {
  const t0 = Date.now();
  mkdirSync(dirname(outFile), { recursive: true });
  const partial = `${outFile}.partial`;
  rmSync(partial, { force: true });
  const tmp = mkdtempSync(join(dirname(outFile), 'certs-'));
  const lab = new Lab(log);
  lab.tempPaths.push(tmp);
  labHook?.(lab); // lets the caller tear the lab down on SIGINT
  try {
    makeCerts(tmp);
    lab.up();

    // servers
    const servers = lab.spawnIn(lab.serverNs, process.execPath, [join(HERE, 'servers.mjs'), JSON.stringify({
      host: SERVER_IP, cert: join(tmp, 'server.crt'), key: join(tmp, 'server.key'), ca: join(tmp, 'ca.crt'), ports: PORTS,
    })]);
    servers.stderr.on('data', (d) => log(`servers: ${String(d).trim()}`));
    const redis = lab.spawnIn(lab.serverNs, 'redis-server', ['--bind', SERVER_IP, '--port', String(PORTS.redis),
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--dir', tmp]);
    await Promise.all([
      waitForLine(servers, 'stdout', /READY/, 15000, 'node servers'),
      waitForLine(redis, 'stdout', /Ready to accept connections/, 15000, 'redis-server'),
    ]);
    log('lab: node http/https (TLS 1.3, TLS 1.2, mTLS) and redis-server listening');

    // capture
    const tcpdump = lab.spawnIn(lab.clientNs, 'tcpdump', ['-i', lab.clientIf, '-w', partial, '-s', '0', '-U', '-n',
      '-B', '131072', '-Z', 'root']);
    let tcpdumpErr = '';
    tcpdump.stderr.on('data', (d) => { tcpdumpErr += d; });
    await waitForLine(tcpdump, 'stderr', /listening on/, 15000, 'tcpdump');
    log(`capture: tcpdump -i ${lab.clientIf} -s 0 -U -w ${partial}`);

    // clients
    const clientPlan = {
      host: SERVER_IP, sni: SNI, ports: PORTS, ca: join(tmp, 'ca.crt'),
      clientCert: join(tmp, 'client.crt'), clientKey: join(tmp, 'client.key'),
      short: plan.short, concurrency: plan.concurrency, bulk: plan.bulk,
    };
    const shortTotal = Object.values(plan.short).reduce((a, b) => a + b, 0);
    const bulkTotal = plan.bulk.reduce((a, b) => a + b.bytes, 0);
    log(`traffic: ${shortTotal} short connections (${Object.entries(plan.short).map(([k, v]) => `${v} ${k}`).join(', ')}) + ` +
      `${plan.bulk.length} bulk transfers (${(bulkTotal / MiB).toFixed(0)} MiB)`);
    const clients = lab.spawnIn(lab.clientNs, process.execPath, [join(HERE, 'clients.mjs'), JSON.stringify(clientPlan)]);
    let final = null;
    let lastLine = '';
    let clientErr = '';
    clients.stderr.on('data', (d) => { clientErr += d; });
    clients.stdout.on('data', (d) => {
      lastLine += d;
      const lines = lastLine.split('\n');
      lastLine = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const msg = JSON.parse(line);
        if (msg.done) final = msg.done;
        const p = msg.progress || msg.done;
        const shortDone = ['http', 'tls12', 'tls13', 'mtls', 'redis'].reduce((a, k) => a + p.done[k], 0);
        const nFailed = Object.values(p.failed).reduce((a, b) => a + b, 0);
        let size = 0;
        try { size = statSync(partial).size; } catch { /* not yet */ }
        log(`traffic: ${p.seconds.toFixed(0)}s  short ${shortDone}/${shortTotal}  bulk ${p.done.bulk}/${plan.bulk.length} ` +
          `(${msg.done ? (p.bulkBytes / MiB).toFixed(0) : p.bulkMiB} MiB)  failed ${nFailed}  capture ${(size / 1e6).toFixed(1)} MB`);
      }
    });
    const clientTimeout = setTimeout(() => Lab.stop(clients, 'SIGKILL'), 20 * 60 * 1000);
    const { code } = await clients.exited;
    clearTimeout(clientTimeout);
    if (code !== 0) {
      throw new Error(`traffic clients failed (exit ${code}): ${final ? JSON.stringify(final.errors) : clientErr.trim().slice(-800)}`);
    }
    if (final && Object.keys(final.errors).length) log(`traffic: tolerated errors ${JSON.stringify(final.errors)}`);

    // let the last FIN/ACKs land, then stop tcpdump (SIGINT makes it flush and print stats)
    await new Promise((r) => setTimeout(r, 1000));
    await Lab.stop(tcpdump, 'SIGINT', 10000);
    const captured = Number(tcpdumpErr.match(/(\d+) packets? captured/)?.[1]);
    const dropped = Number(tcpdumpErr.match(/(\d+) packets? dropped by kernel/)?.[1]);
    if (dropped > 0) log(`capture: WARNING tcpdump reports ${dropped} packets dropped by kernel`);

    const bytes = statSync(partial).size;
    if (bytes < plan.minBytes) throw new Error(`capture is only ${(bytes / 1e6).toFixed(1)} MB, expected ≥ ${(plan.minBytes / 1e6).toFixed(0)} MB`);
    renameSync(partial, outFile);
    const meta = {
      file: outFile, bytes, tcpdump: { captured, dropped },
      generatedAt: new Date().toISOString(), generationSeconds: (Date.now() - t0) / 1000,
      traffic: final, plan: { short: plan.short, concurrency: plan.concurrency, bulk: plan.bulk },
      lab: { serverIp: SERVER_IP, mtu: 1500, offloads: 'tso/gso/gro/tx-csum off' },
    };
    writeFileSync(`${outFile}.json`, JSON.stringify(meta, null, 2) + '\n');
    log(`capture: ${outFile} ${(bytes / 1e6).toFixed(1)} MB, ${captured} packets (${dropped} dropped), generated in ${meta.generationSeconds.toFixed(0)}s`);
    return meta;
  } finally {
    await lab.down(); // also removes the certificates
    rmSync(partial, { force: true });
    log('lab: namespaces deleted, children stopped');
  }
}
