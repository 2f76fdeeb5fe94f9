// Offline mode: capture files → flows → the same classifier the agent uses → report.

import { classify } from '../classify/index.js';
import { readFlows, type FlowOptions, type ProgressCallback } from './flows.js';
import { summarize, toFlowJson, type FlowJson, type Summary } from './report.js';

export interface ClassifyResult {
  flows: FlowJson[];
  summary: Summary;
  /** One line each for stderr: truncated files, flows or memory beyond the bounds. */
  warnings: string[];
}

export function classifyCaptures(paths: readonly string[], onProgress?: ProgressCallback, opts: FlowOptions = {}): ClassifyResult {
  const { flows, stats } = readFlows(paths, opts, onProgress);
  const withFile = paths.length > 1;
  const out = flows.map((f) => toFlowJson(f, classify(f.bytesForClassifier), withFile ? f.file : undefined));
  return { flows: out, summary: summarize(out), warnings: stats.warnings };
}
