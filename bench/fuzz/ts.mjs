// The fuzz engine and corpus are TypeScript (test/lab/, type-checked with the tests and
// shared with the CI test); these launchers run them through the same ts-node loader tap
// uses. Worker threads inherit the loader from the process's execArgv.
import { spawnSync } from 'node:child_process';

const LOADER = '--import=@tapjs/typescript/import';

/** Re-executes this script under the TypeScript loader unless it already runs under it; returns when it does. */
export function ensureTypeScript() {
  if (process.execArgv.includes(LOADER)) return;
  const r = spawnSync(process.execPath, [LOADER, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
    stdio: 'inherit',
    // Type-checking is `npm run lint`'s job; here it would only slow every worker's start.
    env: { TS_NODE_TRANSPILE_ONLY: '1', ...process.env },
  });
  process.exit(r.status ?? 1);
}
