// Runs the built CLI (`node dist/cli/main.js classify --json FILE...`) and types its output
// as documented in /work/shared/INTERFACE.md.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface Addr {
  ip: string;
  port: number;
}

export interface FlowJson {
  transport: 'tcp' | 'udp' | 'esp' | 'ah' | 'other';
  client: Addr;
  server: Addr;
  verdict: 'plaintext' | 'tls' | 'mtls' | 'encrypted-other' | 'unknown';
  protocol: string;
  upgradedFrom?: string;
  tls?: {
    version?: string;
    sni?: string;
    alpn?: string[];
    cipher?: string;
    ja4?: string;
    clientCertificate: 'observed' | 'inferred' | 'none' | 'unknown';
    alpnSelected?: string;
  };
  mesh: 'istio' | 'istio-ambient' | 'linkerd' | 'consul' | 'none';
  packets: { toServer: number; toClient: number };
  bytes: { toServer: number; toClient: number };
  evidence: string;
  file?: string;
}

export interface ClassifyJson {
  flows: FlowJson[];
  summary: { flows: number; byVerdict: Record<string, number>; packets: number; bytes: number };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Why the CLI cannot be run, or undefined. */
export function cliMissingReason(): string | undefined {
  return existsSync(CLI) ? undefined : `${CLI} does not exist: run \`npm run build\` first`;
}

/** Runs the CLI with arbitrary arguments (60 s deadline). */
export function runCli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `classify --json FILES`; throws with the CLI's stderr when it does not exit 0 with JSON. */
export async function classify(files: string[]): Promise<ClassifyJson & { stderr: string }> {
  const r = await runCli(['classify', '--json', ...files]);
  if (r.code !== 0) throw new Error(`plainsight classify exited ${r.code}: ${r.stderr.trim().slice(0, 2000)}`);
  let out: ClassifyJson;
  try {
    out = JSON.parse(r.stdout) as ClassifyJson;
  } catch (e) {
    throw new Error(`plainsight classify --json printed something that is not JSON: ${r.stdout.slice(0, 300)}`, { cause: e });
  }
  return { ...out, stderr: r.stderr };
}

/** Flows whose server port (and transport) match; optionally a client port too. */
export function flowsTo(out: ClassifyJson, serverPort: number, opts: { transport?: string; clientPort?: number; serverIp?: string } = {}): FlowJson[] {
  return out.flows.filter(
    (f) =>
      f.server.port === serverPort &&
      f.transport === (opts.transport ?? 'tcp') &&
      (opts.clientPort === undefined || f.client.port === opts.clientPort) &&
      (opts.serverIp === undefined || f.server.ip === opts.serverIp),
  );
}

/** A compact description of a flow for assertion messages. */
export function describe(f: FlowJson | undefined): string {
  if (!f) return '(no flow)';
  const { transport, client, server, verdict, protocol, upgradedFrom, tls, mesh, evidence } = f;
  return JSON.stringify({ transport, client, server, verdict, protocol, upgradedFrom, tls, mesh, evidence });
}

/**
 * The single flow matching the selector, asserting there is exactly one. Returns
 * undefined (after a failed assertion) otherwise, so callers can `if (!f) return`.
 */
export function oneFlow(
  t: Test,
  out: ClassifyJson,
  sel: { serverPort: number; transport?: string; clientPort?: number; serverIp?: string },
  what: string,
): FlowJson | undefined {
  const fs = flowsTo(out, sel.serverPort, sel);
  if (fs.length !== 1) {
    t.fail(`${what}: expected exactly one flow to ${sel.transport ?? 'tcp'}/${sel.serverPort}${sel.clientPort ? ` from port ${sel.clientPort}` : ''}, got ${fs.length}`, {
      found: fs.map(describe),
      allServerPorts: [...new Set(out.flows.map((f) => `${f.transport}/${f.server.port}`))],
    });
    return undefined;
  }
  return fs[0];
}

/** classify, or one failed assertion saying why it could not run (CLI not built, crash, bad JSON). */
export async function classifyOrFail(t: Test, files: string[]): Promise<(ClassifyJson & { stderr: string }) | undefined> {
  const missing = cliMissingReason();
  if (missing) {
    t.fail(`cannot run plainsight classify: ${missing}`);
    return undefined;
  }
  try {
    return await classify(files);
  } catch (e) {
    t.fail(String((e as Error).message));
    return undefined;
  }
}
