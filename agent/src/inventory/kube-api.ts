// A small read-only Kubernetes API client: GET a resource, list + watch a collection.
//
// Why not @kubernetes/client-node at run time: its 2.x line (the version package.json
// pins) loads undici 8, which needs Node ≥ 22.19 (`engines`) and throws at import on
// Node 20 (zlib.createZstdDecompress, webidl markAsUncloneable are missing). Its types are
// still used (`import type`, erased at build). This client speaks the same protocol the
// way client-go's reflector does (https://kubernetes.io/docs/reference/using-api/api-concepts/
// "Efficient detection of changes"):
//   list  GET <path>?fieldSelector=…              → {kind: …List, metadata.resourceVersion, items}
//   watch GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N
//         → newline-delimited WatchEvent {type: ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, object}
// A watch that ends is resumed from the last resourceVersion; "410 Gone" (expired
// resourceVersion) relists. Errors go to the owner, who retries with backoff.
//
// Credentials: in a pod, the ServiceAccount (token re-read at every request: bound tokens
// rotate, CA, KUBERNETES_SERVICE_HOST/PORT); else a kubeconfig (--kubeconfig, $KUBECONFIG,
// ~/.kube/config): server, CA, token/tokenFile or client certificate. Exec and
// auth-provider plugins are not supported (a clear error says so).

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { PlainsightError } from '../errors.js';

export interface ApiConfig {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  tokenFile?: string;
  insecure?: boolean;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** The Status object's message, when the API server sent one. */
    readonly detail?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

function configError(message: string, cause?: unknown): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_INVENTORY_KUBECONFIG', message, cause === undefined ? undefined : { cause });
}

type Named<T> = { name: string } & T;
interface KubeconfigFile {
  'current-context'?: string;
  clusters?: Named<{ cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean } }>[];
  users?: Named<{ user?: { token?: string; tokenFile?: string; 'client-certificate'?: string; 'client-certificate-data'?: string; 'client-key'?: string; 'client-key-data'?: string; exec?: unknown; 'auth-provider'?: unknown } }>[];
  contexts?: Named<{ context: { cluster: string; user?: string } }>[];
}

async function parseKubeconfig(text: string): Promise<KubeconfigFile> {
  try {
    return JSON.parse(text) as KubeconfigFile;
  } catch {
    /* YAML, the usual form */
  }
  // `yaml` (ours) or `js-yaml` (installed with @kubernetes/client-node), whichever loads.
  for (const name of ['yaml', 'js-yaml']) {
    try {
      const m = (await import(name)) as { parse?: (s: string) => unknown; load?: (s: string) => unknown; default?: { parse?: (s: string) => unknown; load?: (s: string) => unknown } };
      const parse = m.parse ?? m.load ?? m.default?.parse ?? m.default?.load;
      if (parse) return parse(text) as KubeconfigFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    }
  }
  throw new Error('it is not JSON, and no YAML parser is installed (npm install yaml)');
}

/** Kubeconfig file, else in-cluster, else $KUBECONFIG / ~/.kube/config. */
export async function loadApiConfig(file?: string): Promise<ApiConfig> {
  if (!file && process.env.KUBERNETES_SERVICE_HOST) {
    const host = process.env.KUBERNETES_SERVICE_HOST;
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
    try {
      return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, ca: readFileSync(`${SA}/ca.crt`), tokenFile: `${SA}/token` };
    } catch (cause) {
      throw configError(`in-cluster configuration incomplete: cannot read ${SA}/ca.crt (automountServiceAccountToken disabled?)`, cause);
    }
  }
  const path = file ?? process.env.KUBECONFIG?.split(':')[0] ?? `${homedir()}/.kube/config`;
  let kc: KubeconfigFile;
  try {
    kc = await parseKubeconfig(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw configError(`cannot read the kubeconfig ${path}: ${(cause as Error).message}`, cause);
  }
  const base = dirname(resolve(path));
  const rel = (p: string): string => resolve(base, p);
  const ctxName = kc['current-context'] ?? kc.contexts?.[0]?.name;
  const ctx = kc.contexts?.find((c) => c.name === ctxName)?.context;
  const cluster = kc.clusters?.find((c) => c.name === ctx?.cluster)?.cluster ?? (ctx ? undefined : kc.clusters?.[0]?.cluster);
  if (!cluster?.server) throw configError(`the kubeconfig ${path} names no cluster server for context "${ctxName ?? ''}"`);
  const user = kc.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (user.exec || user['auth-provider']) throw configError(`the kubeconfig ${path} uses an exec/auth-provider plugin, which the agent does not run: give it a token or a client certificate`);
  const data = (b64?: string, p?: string): Buffer | undefined => (b64 ? Buffer.from(b64, 'base64') : p ? readFileSync(rel(p)) : undefined);
  try {
    const cfg: ApiConfig = { server: cluster.server.replace(/\/+$/, '') };
    const ca = data(cluster['certificate-authority-data'], cluster['certificate-authority']);
    const cert = data(user['client-certificate-data'], user['client-certificate']);
    const key = data(user['client-key-data'], user['client-key']);
    if (ca) cfg.ca = ca;
    if (cert) cfg.cert = cert;
    if (key) cfg.key = key;
    if (user.token) cfg.token = user.token;
    if (user.tokenFile) cfg.tokenFile = rel(user.tokenFile);
    if (cluster['insecure-skip-tls-verify']) cfg.insecure = true;
    return cfg;
  } catch (cause) {
    throw configError(`the kubeconfig ${path} names a file that cannot be read: ${(cause as Error).message}`, cause);
  }
}

/** Sends a GET; resolves with the response once its status is 200, else rejects with an ApiError. */
function request(cfg: ApiConfig, path: string, query: Record<string, string>, signal?: AbortSignal, idleMs = 30_000): Promise<http.IncomingMessage> {
  const url = new URL(cfg.server + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'plainsight-agent' };
  const token = cfg.tokenFile ? readFileSync(cfg.tokenFile, 'utf8').trim() : cfg.token;
  if (token) headers.authorization = `Bearer ${token}`;
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolvePromise, reject) => {
    const req = mod.get(url, { headers, ...(cfg.ca ? { ca: cfg.ca } : {}), ...(cfg.cert ? { cert: cfg.cert } : {}), ...(cfg.key ? { key: cfg.key } : {}), rejectUnauthorized: !cfg.insecure, ...(signal ? { signal } : {}) }, (res) => {
      if (res.statusCode === 200) return resolvePromise(res);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 4096) body += d;
      });
      res.on('end', () => {
        let detail: string | undefined;
        try {
          detail = (JSON.parse(body) as { message?: string }).message;
        } catch {
          /* not a Status */
        }
        reject(new ApiError(`HTTP ${res.statusCode}${detail ? `: ${detail}` : ''}`, res.statusCode, detail));
      });
      res.on('error', reject);
    });
    req.setTimeout(idleMs, () => req.destroy(new ApiError(`no answer within ${Math.round(idleMs / 1000)} s`)));
    req.on('error', (err) => reject(err instanceof ApiError ? err : new ApiError((err as NodeJS.ErrnoException).code ?? err.message, undefined, undefined, { cause: err })));
  });
}

export async function getJson<T>(cfg: ApiConfig, path: string, query: Record<string, string> = {}): Promise<T> {
  const res = await request(cfg, path, query);
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) text += chunk as string;
  return JSON.parse(text) as T;
}

interface K8sObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface ListWatchHandlers {
  /** After the list and after every watch event. */
  onChange(): void;
  /** A list or watch failed; the watcher stopped (start() again to retry). */
  onError(err: ApiError): void;
  /** The API server answered a list or a watch (200). */
  onAnswer?(): void;
}

/** A collection kept in sync: list, then watch from its resourceVersion; relist on 410. */
export class ListWatcher<T extends K8sObject> {
  private readonly objects = new Map<string, T>();
  private resourceVersion = '';
  private abort: AbortController | undefined;
  private stopped = true;

  constructor(
    private readonly cfg: ApiConfig,
    private readonly path: string,
    private readonly query: Record<string, string>,
    private readonly handlers: ListWatchHandlers,
    private readonly watchSeconds = 300,
  ) {}

  list(): T[] {
    return [...this.objects.values()];
  }

  /** Lists (unless a resourceVersion is held), then watches until stop() or an error. */
  async start(): Promise<void> {
    this.abort?.abort();
    this.stopped = false;
    const abort = new AbortController();
    this.abort = abort;
    try {
      if (!this.resourceVersion) await this.relist();
    } catch (err) {
      this.fail(err, abort);
      return;
    }
    void this.watchLoop(abort);
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  private async relist(): Promise<void> {
    const l = await getJson<{ metadata?: { resourceVersion?: string }; items?: T[] }>(this.cfg, this.path, this.query);
    this.objects.clear();
    for (const o of l.items ?? []) this.objects.set(keyOf(o), o);
    this.resourceVersion = l.metadata?.resourceVersion ?? '';
    this.handlers.onAnswer?.();
    this.handlers.onChange();
  }

  private fail(err: unknown, abort: AbortController): void {
    if (this.stopped || abort.signal.aborted) return;
    abort.abort();
    this.handlers.onError(err instanceof ApiError ? err : new ApiError((err as Error).message, undefined, undefined, { cause: err }));
  }

  private async watchLoop(abort: AbortController): Promise<void> {
    while (!this.stopped && !abort.signal.aborted) {
      const began = Date.now();
      try {
        if (!this.resourceVersion) await this.relist();
        const res = await request(
          this.cfg,
          this.path,
          { ...this.query, watch: '1', resourceVersion: this.resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(this.watchSeconds) },
          abort.signal,
          // A quiet watch is not a dead one: the server ends it at timeoutSeconds.
          (this.watchSeconds + 30) * 1000,
        );
        this.handlers.onAnswer?.();
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        for await (const line of lines) {
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as { type: string; object: T & { code?: number } };
          if (ev.type === 'ERROR') {
            // 410 Gone: our resourceVersion is too old; relist. Others: start over too.
            this.resourceVersion = '';
            break;
          }
          const rv = ev.object.metadata?.resourceVersion;
          if (ev.type === 'ADDED' || ev.type === 'MODIFIED') this.objects.set(keyOf(ev.object), ev.object);
          else if (ev.type === 'DELETED') this.objects.delete(keyOf(ev.object));
          if (rv) this.resourceVersion = rv;
          if (ev.type !== 'BOOKMARK') this.handlers.onChange();
        }
        // The server ended the watch (timeoutSeconds): resume from the last resourceVersion.
      } catch (err) {
        this.fail(err, abort);
        return;
      }
      // A server that ends watches at once must not make this a busy loop.
      if (Date.now() - began < 1000) await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

function keyOf(o: K8sObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}
