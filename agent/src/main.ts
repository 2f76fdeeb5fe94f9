// Runs the agent until SIGTERM/SIGINT: logs (pino, JSON) on stderr, flow summaries (jsonl)
// on stdout. Stops when `stopped` resolves (cli/signals.ts).

import pino, { type Logger } from 'pino';
import { Agent, type AgentConfig } from './agent.js';
import type { AgentFlowJson } from './capture/tracker.js';

export function agentLogger(level = process.env.PLAINSIGHT_LOG_LEVEL ?? 'info'): Logger {
  // Synchronous: the agent logs state changes only, and a crash must not lose the last lines.
  return pino({ name: 'plainsight-agent', level }, pino.destination({ dest: 2, sync: true }));
}

/** Resolves with the exit code once `stopped` resolved (a signal) and the agent closed. */
export async function runAgent(config: AgentConfig, stopped: Promise<NodeJS.Signals>, log: Logger = agentLogger()): Promise<number> {
  // Lines are batched and written once per tick: one write per line would cost more
  // than building it when thousands of flows end at once.
  let pending: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    process.stdout.write(text);
  };
  const write =
    config.output === 'jsonl'
      ? (line: AgentFlowJson): void => {
          pending.push(`${JSON.stringify(line)}\n`);
          if (pending.length >= 256) flush();
          else if (!scheduled) {
            scheduled = true;
            setImmediate(flush);
          }
        }
      : (): void => undefined;
  const agent = await Agent.start(config, log, write);
  const signal = await stopped;
  log.info({ signal }, 'stopping');
  await agent.close();
  flush();
  return 0;
}
