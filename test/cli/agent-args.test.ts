// `plainsight agent` options → configuration, and usage errors (exit 2, one line).

import t from 'tap';
import { agentConfig, parseDuration } from '../../cli/commands/agent.js';
import { isPlainsightError } from '../../agent/src/errors.js';

t.test('defaults and options', async (t) => {
  const d = agentConfig([]);
  t.match(d, { mode: 'local', netns: [], interfaces: [], metricsAddr: ':9101', output: 'jsonl', attachMode: 'auto', loopback: true, idleTimeoutMs: 30_000 });
  const c = agentConfig([
    '--mode', 'local', '--netns', 'web-*', '--netns', 'db', '--interface', 'eth0', '--metrics-addr', '127.0.0.1:0',
    '--output', 'none', '--attach', 'clsact', '--no-loopback', '--idle-timeout', '2m', '--drain-interval', '250ms',
    '--classify-after', '1.5s', '--max-flows', '1024', '--samples', '8', '--low-memory',
  ]);
  t.match(c, {
    netns: ['web-*', 'db'], interfaces: ['eth0'], metricsAddr: '127.0.0.1:0', output: 'none', attachMode: 'clsact', loopback: false,
    idleTimeoutMs: 120_000, drainIntervalMs: 250, classifyAfterMs: 1500, maxFlows: 1024, samplesPerDirection: 8, lowMemory: true,
  });
  t.match(agentConfig(['--metrics-addr', 'off']), { metricsAddr: '' }, "'off' disables the endpoint");
  t.equal(agentConfig(['--help']), 'help');
  t.equal(parseDuration('x', '30s'), 30_000);
  t.equal(parseDuration('x', '500'), 500);
});

t.test('--mode kubernetes', async (t) => {
  const saved = process.env.NODE_NAME;
  t.teardown(() => {
    if (saved === undefined) delete process.env.NODE_NAME;
    else process.env.NODE_NAME = saved;
  });
  process.env.NODE_NAME = 'node-a';
  t.match(agentConfig(['--mode', 'kubernetes']), { mode: 'kubernetes', node: 'node-a', procRoot: '/proc' }, 'NODE_NAME names the node; /proc by default');
  t.match(agentConfig(['--mode', 'kubernetes', '--kubeconfig', '/k', '--proc-root', '/host/proc', '--node', 'n2']), { kubeconfig: '/k', procRoot: '/host/proc', node: 'n2' });
  delete process.env.NODE_NAME;
  t.throws(() => agentConfig(['--mode', 'kubernetes']), { code: 'PLAINSIGHT_ERR_USAGE', message: /NODE_NAME/ }, 'no node name: a usage error naming NODE_NAME');
  t.throws(() => agentConfig(['--kubeconfig', '/k']), { code: 'PLAINSIGHT_ERR_USAGE' }, '--kubeconfig without --mode kubernetes');
  t.throws(() => agentConfig(['--mode', 'kubernetes', '--node', 'n', '--netns', 'x']), { code: 'PLAINSIGHT_ERR_USAGE' }, '--netns is local mode only');
});

t.test('usage errors', async (t) => {
  for (const argv of [
    ['--mode', 'cluster'],
    ['--aggregator', 'no-port'],
    ['--netns', 'a/b'],
    ['--metrics-addr', 'nope'],
    ['--output', 'xml'],
    ['--attach', 'xdp'],
    ['--idle-timeout', 'soon'],
    ['--max-flows', '0'],
    ['--bogus'],
    ['extra'],
  ]) {
    try {
      agentConfig(argv);
      t.fail(`${argv.join(' ')} accepted`);
    } catch (e) {
      t.ok(isPlainsightError(e) && e.code === 'PLAINSIGHT_ERR_USAGE' && e.exitCode === 2, `${argv.join(' ')}: ${(e as Error).message}`);
    }
  }
});
