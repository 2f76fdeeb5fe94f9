// Runs the aggregator until SIGTERM/SIGINT. Logs: pino JSON on stdout (state changes
// only, never per flow). A second signal while closing exits at once.

import pino, { type Logger } from 'pino';
import type { AggregatorConfig } from './config.js';
import { startAggregator } from './server.js';

export function aggregatorLogger(level = process.env.PLAINSIGHT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'plainsight-aggregator', level }, pino.destination({ dest: 1, sync: true }));
}

/** Resolves with the exit code once the aggregator stopped (after a signal). */
export async function runAggregator(config: AggregatorConfig, log: Logger = aggregatorLogger()): Promise<number> {
  const agg = await startAggregator(config, log);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.removeListener('SIGTERM', on);
      process.removeListener('SIGINT', on);
      process.once('SIGTERM', () => process.exit(143));
      process.once('SIGINT', () => process.exit(130));
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
  log.info({ signal }, 'stopping');
  await agg.close();
  log.info({ flows: agg.store.size }, 'stopped');
  return 0;
}
