#!/usr/bin/env node
// `plainsight` — one binary, one subcommand per job (INTERFACE.md). Every failure ends
// as one line a person can act on and an exit code: 0 ok, 1 runtime failure, 2 usage.

import { isPlainsightError, PlainsightError } from '../agent/src/errors.js';

const USAGE = `plainsight — is this traffic really encrypted?

Usage:
  plainsight classify FILE... [--json]   classify every flow of pcap/pcapng captures (offline)
  plainsight agent [--mode local] [--netns NAME...] [--interface IF...] [--metrics-addr :9101]
                                         observe this node's pods live (eBPF), flows as jsonl
  plainsight aggregator [--grpc-addr :50051] [--metrics-addr :9100] [--retention 1h] [--max-flows N]
                        [--tls-cert F --tls-key F --tls-ca F] [--token-file F] [--data-dir DIR]
                                         collect agents' flows; serve /metrics and the query API
  plainsight flows [--aggregator HOST:PORT] [--namespace NS] [--workload W] [--verdict V]
                   [--since 15m] [--follow] [--json]
                                         list the cluster's flows and their verdicts
  plainsight coverage [--aggregator HOST:PORT] [--by namespace|workload|edge] [--json]
                                         how much traffic is encrypted
  plainsight demo [--duration N] [--json]
                                         a live lab on this host (netns pods, real TLS stacks,
                                         meshes, nginx, PostgreSQL, Redis) with agent + aggregator

Options:
  -h, --help       show this help
  --version        print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage error.
`;

type Command = (argv: string[]) => Promise<number>;

// Each command is imported when it runs: `classify` should not pay for loading the live
// agent (eBPF bindings, metrics), nor the agent for the offline reader.
const COMMANDS: Record<string, Command> = {
  classify: async (argv) => (await import('./commands/classify.js')).runClassify(argv),
  agent: async (argv) => (await import('./commands/agent.js')).runAgentCommand(argv),
  aggregator: async (argv) => (await import('./commands/aggregator.js')).runAggregatorCommand(argv),
  flows: async (argv) => (await import('./commands/flows.js')).runFlows(argv),
  coverage: async (argv) => (await import('./commands/coverage.js')).runCoverage(argv),
  demo: async (argv) => (await import('./commands/demo.js')).runDemo(argv),
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version') {
    process.stdout.write(`${await version()}\n`);
    return 0;
  }
  const run = COMMANDS[cmd];
  if (!run) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `unknown command "${cmd}"`);
  return run(rest);
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function fail(err: unknown): number {
  if (isPlainsightError(err)) {
    process.stderr.write(`${err.line()}\n`);
    if (process.env.PLAINSIGHT_DEBUG && err.cause) console.error(err.cause);
    return err.exitCode;
  }
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(
    `plainsight: internal error: ${msg} (PLAINSIGHT_ERR_INTERNAL); rerun with PLAINSIGHT_DEBUG=1 and report the output\n`,
  );
  if (process.env.PLAINSIGHT_DEBUG) console.error(err);
  return 1;
}

// A closed stdout (e.g. `| head`) is not an error worth a message.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.exitCode = fail(err);
  },
);
