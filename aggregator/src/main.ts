// Runs the aggregator until SIGTERM/SIGINT. Logs: pino JSON on stdout (state changes
// only, never per flow). Stops when `stopped` resolves (cli/signals.ts).

import pino, { type Logger } from 'pino';
import type { AggregatorConfig } from './config.js';
import { startAggregator } from './server.js';

export function aggregatorLogger(level = process.env.PLAINSIGHT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'plainsight-aggregator', level }, pino.destination({ dest: 1, sync: true }));
}

/** Resolves with the exit code once `stopped` resolved (a signal) and the aggregator closed. */
export async function runAggregator(config: AggregatorConfig, stopped: Promise<NodeJS.Signals>, log: Logger = aggregatorLogger()): Promise<number> {
  const agg = await startAggregator(config, log);
  const signal = await stopped;
  log.info({ signal }, 'stopping');
  await agg.close();
  log.info({ flows: agg.store.size }, 'stopped');
  return 0;
}
