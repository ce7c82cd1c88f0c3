/** What every command-line tool shares: argument parsing, number flags, and error exits. */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UserError } from "../errors.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Runs a tool's main function. A `UserError` (bad input) becomes one line on stderr and exit
 * code 1, a bad flag exit code 2; anything else is a bug and keeps its stack trace.
 */
export async function runMain(main: () => Promise<number | void>): Promise<never> {
  try {
    const code = await main();
    Deno.exit(code ?? 0);
  } catch (e) {
    if (e instanceof UserError) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    if (e instanceof UsageError) {
      console.error(`error: ${e.message} (see --help)`);
      Deno.exit(2);
    }
    throw e;
  }
}

export class UsageError extends Error {}

/** node:util parseArgs in strict mode, with its errors turned into one-line usage errors. */
export function parseFlags<T extends Options>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    // parseArgs explains in several sentences; keep the first, and the one fix it suggests.
    const msg = (e as Error).message.split("\n")[0];
    const first = msg.split(/\.(\s|$)/)[0];
    const option = msg.match(/'(--[\w-]+)' argument is ambiguous/)?.[1];
    throw new UsageError(
      option
        ? `${option} needs a value (a value starting with '-' is written ${option}=-1)`
        : first,
    );
  }
}

interface Range {
  min?: number;
  max?: number;
}

/** A whole number flag; undefined stays undefined so a preset's value can apply. */
export function intFlag(name: string, raw: string | undefined, range: Range = {}) {
  if (raw === undefined) return undefined;
  const v = Number(raw.trim());
  if (raw.trim() === "" || !Number.isInteger(v)) {
    throw new UsageError(`--${name} must be a whole number, got '${raw}'`);
  }
  return checkRange(name, v, range);
}

export function floatFlag(name: string, raw: string | undefined, range: Range = {}) {
  if (raw === undefined) return undefined;
  const v = Number(raw.trim());
  if (raw.trim() === "" || !Number.isFinite(v)) {
    throw new UsageError(`--${name} must be a number, got '${raw}'`);
  }
  return checkRange(name, v, range);
}

function checkRange(name: string, v: number, { min, max }: Range): number {
  if (min !== undefined && v < min) {
    throw new UsageError(`--${name} must be at least ${min}, got ${v}`);
  }
  if (max !== undefined && v > max) {
    throw new UsageError(`--${name} must be at most ${max}, got ${v}`);
  }
  return v;
}
