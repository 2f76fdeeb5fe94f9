// Per-agent token buckets on flow summaries. A batch is never refused: reserve() says how
// long it must wait before it is applied and acknowledged. The Report handler pauses the
// stream meanwhile, so HTTP/2 flow control and the agent's in-flight limit push the
// excess back into the agent's bounded buffer (whose overflow the agent counts and
// reports in-band) instead of into this process's memory.

export class AgentRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  /** `perSecond` 0: unlimited. */
  constructor(
    readonly perSecond: number,
    readonly burst = perSecond * 2,
  ) {}

  /**
   * Takes `cost` tokens from the agent's bucket, going into debt if needed; returns the ms
   * until the debt is repaid (0: go ahead now). Later reservations queue behind earlier
   * ones, so one agent's sustained rate is `perSecond` whatever its batch sizes.
   */
  reserve(agentId: string, cost: number, nowMs = Date.now()): number {
    if (this.perSecond <= 0 || cost <= 0) return 0;
    let b = this.buckets.get(agentId);
    if (!b) {
      b = { tokens: this.burst, atMs: nowMs };
      this.buckets.set(agentId, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.atMs) * this.perSecond) / 1000);
    b.atMs = nowMs;
    b.tokens -= cost;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens * 1000) / this.perSecond);
  }

  /** Drops full buckets (agents idle long enough to be back at their burst): bounded memory. */
  sweep(nowMs = Date.now()): void {
    for (const [id, b] of this.buckets) {
      if (b.tokens + ((nowMs - b.atMs) * this.perSecond) / 1000 >= this.burst) this.buckets.delete(id);
    }
  }
}
