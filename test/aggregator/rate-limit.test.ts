// The per-agent token bucket: a burst goes through at once, then each agent waits its own
// turn at the configured rate; 0 means unlimited; idle full buckets are forgotten.

import t from 'tap';
import { AgentRateLimiter } from '../../aggregator/src/ingest/rate-limit.js';

t.test('burst, then the rate; agents independent', async (t) => {
  const l = new AgentRateLimiter(100, 200);
  t.equal(l.reserve('a', 150, 0), 0, 'within the burst: no wait');
  t.equal(l.reserve('a', 50, 0), 0, 'the rest of the burst');
  t.equal(l.reserve('a', 100, 0), 1000, '100 more at 100/s: wait 1 s');
  t.equal(l.reserve('a', 100, 0), 2000, 'queued behind the previous reservation');
  t.equal(l.reserve('b', 200, 0), 0, 'another agent has its own bucket');
  t.equal(l.reserve('a', 100, 3000), 0, 'debt repaid after 3 s: a full second of tokens again');
  t.equal(l.reserve('a', 5000, 3000), 50_000, 'one batch larger than the burst waits for its tokens (never refused)');
});

t.test('0: unlimited; sweep forgets idle agents', async (t) => {
  const off = new AgentRateLimiter(0);
  t.equal(off.reserve('a', 1e9, 0), 0);
  const l = new AgentRateLimiter(10);
  l.reserve('a', 40, 0); // 20 in debt
  l.reserve('b', 1, 0);
  l.sweep(100);
  t.equal(l.reserve('a', 1, 100), 2000, 'a, still in debt, kept');
  l.sweep(60_000);
  t.equal(l.reserve('a', 20, 60_000), 0, 'a full bucket again after a long pause');
});
