// Progress for long work: one self-overwriting line on stderr, only when stderr is a
// terminal, so it never pollutes --json output or logs.

export interface Progress {
  update(done: number, total: number, label?: string): void;
  done(): void;
}

export function progress(what: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update() {}, done() {} };
  let last = 0;
  let shown = false;
  return {
    update(done, total, label) {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0;
      stream.write(`\r${what} ${label ?? ''} ${pct}%\u001b[K`);
      shown = true;
    },
    done() {
      if (shown) stream.write('\r\u001b[K');
    },
  };
}
