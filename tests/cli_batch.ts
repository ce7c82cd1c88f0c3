/**
 * What the tests of the tools that train many runs share (tests/batch_runs_test.ts,
 * tests/many_runs_test.ts): their permissions, a temporary directory holding a small names file,
 * the check that a refusal is one line, and the flags of a `lecture` run on that file.
 */

import names from "../data/names.txt" with { type: "text" };
import { assert, assertEquals, type CliResult, runCli } from "./util.ts";

export const NEEDS = ["read", "write", "run", "env"] as const;
export const ALL = ["--allow-read", "--allow-write", "--allow-run", "--allow-env"];
/** The first 400 names: enough for every split, quick to train on. */
export const tiny = names.split("\n").slice(0, 400).join("\n") + "\n";

/** Runs one of the tools with every permission a batch needs. */
export const tool = (script: string, args: string[]) => runCli(script, args, { permissions: ALL });

/** Runs `fn` in a fresh directory holding names.txt (`tiny`), removed after. */
export async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-batch-" });
  try {
    await Deno.writeTextFile(`${dir}/names.txt`, tiny);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The tool failed with one line on stderr, "error: ..." matching `pattern`. */
export function oneLineError(r: CliResult, pattern: RegExp): void {
  assert(r.code !== 0, `expected a failure:\n${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(pattern.test(lines[0]), `'${lines[0]}' does not match ${pattern}`);
}

/** The flags of a `lecture` run on DIR/names.txt, then `flags`. */
export const lectureOn = (dir: string, ...flags: string[]) => [
  "--data",
  `${dir}/names.txt`,
  "--preset",
  "lecture",
  ...flags,
];
