// Offline mode: capture files → flows → the same classifier the agent uses → report.

import { classify } from '../classify/index.js';
import { forEachFlow, type FlowOptions, type ProgressCallback } from './flows.js';
import { addToSummary, emptySummary, toFlowJson, type FlowJson, type Summary } from './report.js';

export interface ClassifyResult {
  flows: FlowJson[];
  summary: Summary;
  /** One line each for stderr: truncated files, flows or memory beyond the bounds. */
  warnings: string[];
}

export function classifyCaptures(paths: readonly string[], onProgress?: ProgressCallback, opts: FlowOptions = {}): ClassifyResult {
  const flows: FlowJson[] = [];
  const { summary, warnings } = classifyEach(paths, (f) => flows.push(f), onProgress, opts);
  return { flows, summary, warnings };
}

export interface ClassifyJsonResult {
  /** Exactly `JSON.stringify({ flows, summary })` of classifyCaptures' result. */
  json: string;
  summary: Summary;
  warnings: string[];
}

/**
 * classifyCaptures() serialized: each flow becomes JSON as soon as it is classified, so
 * neither the flow records nor the report objects of all flows are alive at once.
 */
export function classifyCapturesJson(paths: readonly string[], onProgress?: ProgressCallback, opts: FlowOptions = {}): ClassifyJsonResult {
  const parts: string[] = [];
  const { summary, warnings } = classifyEach(paths, (f) => parts.push(JSON.stringify(f)), onProgress, opts);
  return { json: `{"flows":[${parts.join(',')}],"summary":${JSON.stringify(summary)}}`, summary, warnings };
}

/** Reads, classifies and reports each flow in order, handing it to `onFlow`; returns the summary and warnings. */
function classifyEach(
  paths: readonly string[],
  onFlow: (flow: FlowJson) => void,
  onProgress: ProgressCallback | undefined,
  opts: FlowOptions,
): { summary: Summary; warnings: string[] } {
  const summary = emptySummary();
  const withFile = paths.length > 1;
  const stats = forEachFlow(
    paths,
    (f) => {
      const out = toFlowJson(f, classify(f.bytesForClassifier), withFile ? f.file : undefined);
      addToSummary(summary, out);
      onFlow(out);
    },
    opts,
    onProgress,
  );
  return { summary, warnings: stats.warnings };
}
