// Throwaway PKI for the lab, made with the openssl CLI at test time: one CA per process,
// then server and client certificates on demand (cached by their parameters).

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export type KeyType = 'ec' | 'rsa';

export interface CertFiles {
  /** PEM certificate path. */
  cert: string;
  /** PEM private key path (unencrypted). */
  key: string;
  /** The CA certificate that signed it. */
  ca: string;
}

export interface CertRequest {
  /** Subject CN. */
  cn: string;
  /** subjectAltName entries, e.g. ['DNS:server.lab', 'IP:198.18.0.1', 'URI:spiffe://cluster.local/ns/default/sa/web']. */
  sans?: string[];
  usage: 'server' | 'client';
  keyType?: KeyType;
}

let dir: string | undefined;
let caPromise: Promise<{ cert: string; key: string }> | undefined;
const issued = new Map<string, Promise<CertFiles>>();

function workDir(): string {
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'ps-lab-pki-'));
    const d = dir;
    process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  }
  return dir;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileP('openssl', args, { cwd: workDir(), timeout: 30_000 });
  } catch (e) {
    const err = e as { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.trim() ?? String(e)}`, { cause: e });
  }
}

function keyArgs(type: KeyType): string[] {
  return type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
}

/** The lab CA (EC P-256), created once per process. */
export function labCa(): Promise<{ cert: string; key: string }> {
  caPromise ??= (async () => {
    const d = workDir();
    const cert = join(d, 'ca.crt');
    const key = join(d, 'ca.key');
    await openssl([
      'req', '-x509', ...keyArgs('ec'), '-nodes', '-keyout', key, '-out', cert, '-days', '2',
      '-subj', '/O=plainsight lab/CN=plainsight lab CA',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { cert, key };
  })();
  return caPromise;
}

/** A certificate signed by the lab CA. Same request, same files (within this process). */
export function labCert(req: CertRequest): Promise<CertFiles> {
  const keyType = req.keyType ?? 'ec';
  const id = JSON.stringify([req.cn, req.sans ?? [], req.usage, keyType]);
  let p = issued.get(id);
  if (!p) {
    p = (async () => {
      const ca = await labCa();
      const d = workDir();
      const base = join(d, `${req.usage}-${issued.size}-${keyType}`);
      const ext = [
        'basicConstraints=critical,CA:FALSE',
        `keyUsage=critical,digitalSignature${keyType === 'rsa' ? ',keyEncipherment' : ''}`,
        `extendedKeyUsage=${req.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
      ];
      if (req.sans?.length) ext.push(`subjectAltName=${req.sans.join(',')}`);
      writeFileSync(`${base}.ext`, ext.join('\n') + '\n');
      await openssl(['req', ...keyArgs(keyType), '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/O=plainsight lab/CN=${req.cn}`]);
      await openssl([
        'x509', '-req', '-in', `${base}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
        '-out', `${base}.crt`, '-days', '2', '-extfile', `${base}.ext`,
      ]);
      return { cert: `${base}.crt`, key: `${base}.key`, ca: ca.cert };
    })();
    issued.set(id, p);
  }
  return p;
}

/** The usual pair: a server certificate for `server.lab` (+ given SANs) and a client certificate. */
export async function labCerts(opts: { serverSans?: string[]; clientKeyType?: KeyType } = {}): Promise<{ server: CertFiles; client: CertFiles }> {
  const [server, client] = await Promise.all([
    labCert({ cn: 'server.lab', sans: ['DNS:server.lab', 'DNS:localhost', ...(opts.serverSans ?? [])], usage: 'server' }),
    labCert({
      cn: 'client.lab',
      sans: ['URI:spiffe://cluster.local/ns/default/sa/client'],
      usage: 'client',
      keyType: opts.clientKeyType ?? 'ec',
    }),
  ]);
  return { server, client };
}
