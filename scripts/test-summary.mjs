// Prints the closing line CI reads ("N passed, N failed, N skipped") from node-tap's
// saved per-file results, so a run that executed no test shows as such.
// Leaf assertions only: a subtest's own result line carries "# time=" and summarises
// its children, so it is not counted again.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const counts = { passed: 0, failed: 0, skipped: 0 };

function walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (p.endsWith('.tap')) count(readFileSync(p, 'utf8'));
  }
}

function count(text) {
  for (const line of text.split('\n')) {
    const m = /^\s*(not ok|ok) \d+/.exec(line);
    if (!m) continue;
    if (/#\s*(SKIP|TODO)/i.test(line)) counts.skipped++;
    else if (/# time=/.test(line)) continue;
    else if (m[1] === 'ok') counts.passed++;
    else counts.failed++;
  }
}

if (existsSync('.tap/test-results')) walk('.tap/test-results');
console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
