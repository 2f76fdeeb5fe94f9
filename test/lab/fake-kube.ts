// A fake Kubernetes API server for the agent's Kubernetes inventory (no API server on this
// machine). It serves the JSON shapes of test/fixtures/k8s (see its README for where they
// come from) over HTTPS (a lab CA, test/lab/certs.ts) the way the real one does, for the
// requests @kubernetes/client-node makes (CoreV1Api lists, its Watch, AppsV1/BatchV1 reads):
//
//   GET /api/v1/pods?fieldSelector=spec.nodeName=N              PodList (selector honoured)
//   GET /api/v1/pods?watch=true&resourceVersion=RV&fieldSelector newline-delimited WatchEvents
//   GET /api/v1/services[?watch=true…]                           ServiceList / WatchEvents
//   GET /apis/apps/v1/namespaces/NS/replicasets/NAME             ReplicaSet (404 Status if none)
//   GET /apis/batch/v1/namespaces/NS/jobs/NAME                   Job
//
// resourceVersion is one counter over all objects (etcd's revision); a watch replays the
// changes after its resourceVersion, then streams new ones; `timeoutSeconds` ends it. A
// watch from a resourceVersion older than the last compact() gets an ERROR event with the
// 410 Gone Status ("too old resource version") and is closed, as the API server does
// (https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses). Any
// query parameter other than those above is refused with 400, as the real server refuses
// unknown field selectors. `forbidden = true` answers every request with the 403 Status
// of fixtures/k8s/status-403.json.

import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { labCert } from './certs.js';

const FIXTURES = new URL('../fixtures/k8s/', import.meta.url);

export function fixture<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
}

type Obj = { kind?: string; apiVersion?: string; metadata: { name: string; namespace?: string; resourceVersion?: string }; spec?: { nodeName?: string } };
type Kind = 'pods' | 'services';

interface Change {
  rv: number;
  kind: Kind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

export class FakeKube {
  forbidden = false;
  readonly requests: string[] = [];
  private rv = 1000;
  /** Watches from before this resourceVersion get 410 Gone. */
  private compacted = 0;
  private readonly objects: Record<Kind, Map<string, Obj>> = { pods: new Map(), services: new Map() };
  private readonly singles = new Map<string, Obj>();
  private readonly changes: Change[] = [];
  private readonly watchers = new Set<{ kind: Kind; node?: string; res: http.ServerResponse }>();

  private constructor(
    private readonly server: https.Server,
    /** The CA that signed the server certificate (the kubeconfig's certificate-authority). */
    readonly ca: string,
  ) {}

  static async start(): Promise<FakeKube> {
    const tls = await labCert({ cn: 'kube-apiserver', sans: ['IP:127.0.0.1'], usage: 'server' });
    const server = https.createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) });
    const fk = new FakeKube(server, tls.ca);
    server.on('request', (req, res) => fk.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fk;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** A kubeconfig (JSON is valid YAML) pointing at this server, written into `dir`. */
  kubeconfig(dir: string): string {
    const path = join(dir, 'kubeconfig.json');
    const kc = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'certificate-authority': this.ca } }],
      users: [{ name: 'agent', user: { token: 'fake-token' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'agent' } }],
      'current-context': 'fake',
    };
    writeFileSync(path, JSON.stringify(kc, null, 2));
    return path;
  }

  /** ReplicaSets, Jobs: served by GET only. */
  putSingle(path: string, obj: Obj): void {
    this.singles.set(path, obj);
  }

  upsert(kind: Kind, obj: Obj): void {
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const type = this.objects[kind].has(key) ? 'MODIFIED' : 'ADDED';
    this.record(kind, type, obj);
    this.objects[kind].set(key, obj);
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const obj = this.objects[kind].get(key);
    if (!obj) return;
    this.objects[kind].delete(key);
    this.record(kind, 'DELETED', structuredClone(obj));
  }

  /**
   * Compacts the history, as etcd does: open watches end, the revision moves on, and a
   * watch from an older resourceVersion gets 410 Gone (the client must relist).
   */
  compact(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    this.compacted = ++this.rv;
    this.changes.length = 0;
  }

  private record(kind: Kind, type: Change['type'], obj: Obj): void {
    obj.metadata.resourceVersion = String(++this.rv);
    const ch: Change = { rv: this.rv, kind, type, object: obj };
    this.changes.push(ch);
    for (const w of this.watchers) if (w.kind === kind && matches(obj, w.node)) w.res.write(`${JSON.stringify({ type, object: obj })}\n`);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (this.forbidden) return json(403, fixture('status-403.json'));
    const kind: Kind | undefined = url.pathname === '/api/v1/pods' ? 'pods' : url.pathname === '/api/v1/services' ? 'services' : undefined;
    if (!kind) {
      const obj = this.singles.get(url.pathname);
      if (obj) return json(200, obj);
      return json(404, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `${url.pathname} not found`, reason: 'NotFound', code: 404 });
    }
    const known = new Set(['fieldSelector', 'watch', 'resourceVersion', 'allowWatchBookmarks', 'timeoutSeconds', 'labelSelector', 'limit']);
    const unknown = [...url.searchParams.keys()].filter((k) => !known.has(k));
    if (unknown.length) return json(400, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `unsupported query parameters: ${unknown.join(', ')}`, reason: 'BadRequest', code: 400 });
    if (url.searchParams.get('labelSelector')) return json(400, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'labelSelector: not served by the fake', reason: 'BadRequest', code: 400 });
    const selector = url.searchParams.get('fieldSelector');
    let node: string | undefined;
    if (selector) {
      const m = /^spec\.nodeName=(.*)$/.exec(selector);
      if (!m || kind !== 'pods') return json(400, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `field label not supported: ${selector}`, reason: 'BadRequest', code: 400 });
      node = m[1];
    }
    const watch = url.searchParams.get('watch');
    if (watch === '1' || watch === 'true') {
      const rvParam = url.searchParams.get('resourceVersion');
      // "" or "0": any version; the server starts with synthetic ADDED events of the current state.
      const from = rvParam && rvParam !== '0' ? Number(rvParam) : undefined;
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders(); // the API server answers a watch at once, before any event
      if (from !== undefined && from < this.compacted) {
        const gone = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.compacted})`, reason: 'Expired', code: 410 };
        res.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
        return;
      }
      if (from === undefined) for (const o of this.objects[kind].values()) if (matches(o, node)) res.write(`${JSON.stringify({ type: 'ADDED', object: o })}\n`);
      if (from !== undefined) for (const ch of this.changes) if (ch.kind === kind && ch.rv > from && matches(ch.object, node)) res.write(`${JSON.stringify({ type: ch.type, object: ch.object })}\n`);
      const w = { kind, ...(node !== undefined ? { node } : {}), res };
      this.watchers.add(w);
      const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
      const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
      res.on('close', () => {
        clearTimeout(timer);
        this.watchers.delete(w);
      });
      return;
    }
    const items = [...this.objects[kind].values()].filter((o) => matches(o, node));
    json(200, { kind: kind === 'pods' ? 'PodList' : 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items });
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.end();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function matches(o: Obj, node: string | undefined): boolean {
  return node === undefined || o.spec?.nodeName === node;
}
