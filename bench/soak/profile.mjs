// Preloaded into the agent by `run.mjs --profile DIR` (node --import): a V8 CPU profile of
// the soak, written to DIR on exit. Started late on purpose: node's --cpu-prof samples
// with SIGPROF from the first instruction, and a signal during BPF_PROG_LOAD makes the
// verifier give up with EAGAIN, so the agent would not start.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.PLAINSIGHT_SOAK_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  setTimeout(() => {
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 1000 });
    session.post('Profiler.start');
  }, 8000).unref();
  process.on('exit', () => {
    // The in-process session answers synchronously, so this works in an exit handler.
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `agent-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
