// Argument parsing on node:util parseArgs, with usage errors as PlainsightError (exit 2).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PlainsightError } from '../agent/src/errors.js';

export function parse<T extends ParseArgsConfig['options']>(argv: string[], options: T, command: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `${command}: ${msg}`, {
      hint: `run \`plainsight ${command} --help\` for usage`,
    });
  }
}
