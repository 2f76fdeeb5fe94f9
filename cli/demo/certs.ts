// A throwaway PKI for the demo, made with the openssl CLI in the demo's temporary
// directory: one CA (EC P-256), one server certificate naming every demo service (DNS and
// SPIFFE-style URI SANs), one client certificate (the workloads' identity in mTLS).

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface CertFiles {
  cert: string;
  key: string;
  ca: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await execFileP('openssl', args, { cwd: dir, timeout: 30_000 });
  } catch (e) {
    throw new Error(`openssl ${args[0]} failed: ${(e as { stderr?: string }).stderr?.trim() ?? String(e)}`, { cause: e });
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

export async function demoCerts(dir: string, serverSans: string[]): Promise<{ server: CertFiles; client: CertFiles }> {
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await openssl(dir, [
    'req', '-x509', ...EC, '-nodes', '-keyout', caKey, '-out', ca, '-days', '1',
    '-subj', '/O=plainsight demo/CN=plainsight demo CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const issue = async (name: string, usage: 'serverAuth' | 'clientAuth', sans: string[]): Promise<CertFiles> => {
    const base = join(dir, name);
    writeFileSync(
      `${base}.ext`,
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', `extendedKeyUsage=${usage}`, `subjectAltName=${sans.join(',')}`].join('\n') + '\n',
    );
    await openssl(dir, ['req', ...EC, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/O=plainsight demo/CN=${name}`]);
    await openssl(dir, ['x509', '-req', '-in', `${base}.csr`, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', `${base}.crt`, '-days', '1', '-extfile', `${base}.ext`]);
    return { cert: `${base}.crt`, key: `${base}.key`, ca };
  };
  const server = await issue('server', 'serverAuth', serverSans);
  const client = await issue('client', 'clientAuth', ['URI:spiffe://cluster.local/ns/default/sa/demo-client']);
  return { server, client };
}
