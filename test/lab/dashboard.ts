// Grafana dashboard JSON for tests: every panel's PromQL, template variables substituted,
// and a check that runs each query against a real Prometheus (whatever it scrapes: the fake
// exporter of test/lab/fake-metrics.ts today, the real aggregator in the end-to-end lab).
//
//   const prom = await PrometheusServer.start(t, target, undefined, [rulesFile]);
//   for (const r of await runPanelQueries(prom, panelQueries(dashboard))) t.ok(r.samples > 0, r.title);

import type { PromSample } from './aggregator.js';

export interface DashboardPanel {
  id?: number;
  type: string;
  title: string;
  targets?: { expr?: string; refId?: string; hide?: boolean }[];
  panels?: DashboardPanel[];
}

export interface Dashboard {
  schemaVersion: number;
  panels: DashboardPanel[];
  templating?: { list: { name: string; type: string; query?: unknown; allValue?: string }[] };
}

export interface PanelQuery {
  title: string;
  panelType: string;
  refId: string;
  /** As written in the dashboard (with $variables). */
  expr: string;
}

/** Every non-row panel (rows' nested panels included), in dashboard order. */
export function allPanels(d: Dashboard): DashboardPanel[] {
  const out: DashboardPanel[] = [];
  const walk = (ps: readonly DashboardPanel[]) => {
    for (const p of ps) {
      if (p.type === 'row') walk(p.panels ?? []);
      else out.push(p);
    }
  };
  walk(d.panels);
  return out;
}

/** The PromQL of every panel target (hidden targets included: they are queries too). */
export function panelQueries(d: Dashboard): PanelQuery[] {
  return allPanels(d).flatMap((p) =>
    (p.targets ?? []).map((tg) => ({ title: p.title, panelType: p.type, refId: tg.refId ?? '?', expr: tg.expr ?? '' })),
  );
}

/** Grafana's built-ins as a test evaluates them: short windows, a Prometheus that just started. */
export const DEFAULT_BUILTINS: Readonly<Record<string, string>> = {
  __rate_interval: '1m',
  __interval: '15s',
  __range: '1m',
};

/**
 * `$name`, `${name}`, `${name:regex}` and `[[name]]` replaced by `vars[name]` (dashboard
 * variables) or DEFAULT_BUILTINS; throws on a variable nobody defined.
 */
export function substituteVariables(expr: string, vars: Readonly<Record<string, string>>): string {
  const all = { ...DEFAULT_BUILTINS, ...vars };
  const value = (name: string) => {
    const v = all[name];
    if (v === undefined) throw new Error(`dashboard variable $${name} has no value in the test (expr: ${expr})`);
    return v;
  };
  return expr
    .replace(/\$\{(\w+)(?::\w+)?\}/g, (_m, n: string) => value(n))
    .replace(/\[\[(\w+)\]\]/g, (_m, n: string) => value(n))
    .replace(/\$(\w+)/g, (_m, n: string) => value(n));
}

export interface PanelResult extends PanelQuery {
  query: string;
  samples: number;
  error?: string;
}

interface Queryable {
  query(q: string): Promise<PromSample[]>;
}

/** Runs each panel query (instant query, now) and reports how many series came back. */
export async function runPanelQueries(prom: Queryable, queries: readonly PanelQuery[], vars: Readonly<Record<string, string>> = { namespace: '.*' }): Promise<PanelResult[]> {
  const out: PanelResult[] = [];
  for (const q of queries) {
    const query = substituteVariables(q.expr, vars);
    try {
      const r = await prom.query(query);
      out.push({ ...q, query, samples: r.length });
    } catch (e) {
      out.push({ ...q, query, samples: 0, error: (e as Error).message });
    }
  }
  return out;
}
