// The long fuzz runner (bench/fuzz/run.mjs) end to end, as `npm run fuzz` starts it: worker
// threads, the table, the exit code, crash files, and the watchdog that stops a worker
// stuck in one input. Bugs are planted with PLAINSIGHT_FUZZ_PLANT (test/lab/fuzz-setup.ts).

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const RUN = new URL('../../bench/fuzz/run.mjs', import.meta.url).pathname;

interface RunJson {
  inputs: number;
  crashes: number;
  targets: { target: string; inputs: number; crashes: number }[];
  crashList: { crash: string; count: number }[];
}

function fuzz(args: string[], plant?: string): Promise<{ code: number | null; json?: RunJson; stderr: string; crashDir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'plainsight-fuzz-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const crashDir = join(dir, 'crashes');
  const env = { ...process.env, PLAINSIGHT_FUZZ_PLANT: plant ?? '' };
  const child = spawn(process.execPath, [RUN, ...args, '--crash-dir', crashDir, '--out', dir, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (code) => {
      let json: RunJson | undefined;
      try {
        json = JSON.parse(stdout) as RunJson;
      } catch {
        json = undefined;
      }
      resolve({ code, json, stderr, crashDir });
    });
  });
}

t.test('a clean run: every target runs on two workers, exit 0', async (t) => {
  const r = await fuzz(['--inputs', '700', '--workers', '2', '--seed', '3']);
  t.equal(r.code, 0, r.stderr.slice(-2000));
  t.equal(r.json?.inputs, 700, 'every input accounted for across the workers');
  t.equal(r.json?.crashes, 0);
  t.ok(r.json?.targets.every((x) => x.inputs > 0), `all ${r.json?.targets.length} targets ran`);
});

t.test('a planted exception: reported, written as <target>-<sha1>.bin, exit 1', async (t) => {
  const r = await fuzz(['--inputs', '300', '--workers', '1'], 'throw');
  t.equal(r.code, 1);
  t.ok((r.json?.crashes ?? 0) > 0, `${r.json?.crashes} crashes`);
  t.match(r.json?.crashList[0]?.crash, /^planted-throw: RangeError: planted/);
  const files = readdirSync(r.crashDir);
  t.ok(files.length > 0 && files.every((f) => /^planted-throw-[0-9a-f]{40}\.bin$/.test(f)), `${files.length} crash files`);
});

t.test('a planted hang: the watchdog stops the worker, saves the input and carries on', async (t) => {
  // The planted target comes last: with seed 1 its first input (index n, the number of real targets) hangs, and
  // 2n + 1 inputs hold no other. Counts the stopped worker had not reported yet are lost.
  const r = await fuzz(['--inputs', '139', '--workers', '1', '--hang-seconds', '2', '--seed', '1'], 'hang');
  t.equal(r.code, 1);
  t.equal(r.json?.crashes, 1, 'one hang');
  t.match(r.json?.crashList[0]?.crash, /^planted-hang: hang: an input ran over 2 s/);
  t.equal(readdirSync(r.crashDir).length, 1, 'the hanging input saved');
  const after = r.json?.targets.filter((x) => x.target !== 'planted-hang') ?? [];
  t.ok(after.length > 60 && after.every((x) => x.inputs >= 1), 'the restarted worker went on with the inputs after the hang');
});
