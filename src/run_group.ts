/**
 * Runs of one shape trained together: each is a run of its own (src/run.ts: its directory,
 * checkpoints, log, report, exactly what it would be alone), and all of them are members of one
 * group of replicas on one device (src/gpu/group.ts), so that their steps go in the same
 * dispatches. A run that fails (a NaN loss, a bad checkpoint) fails alone; one signal stops
 * them all at a chunk boundary, each with its checkpoint, and --resume continues each.
 */

import { type BackendOptions, type KernelChoice, openGroup } from "./backend.ts";
import { run, type RunOptions, type RunReporter, type RunResult } from "./run.ts";

export function runGroup(
  list: readonly RunOptions[],
  reporters: readonly RunReporter[],
  signal?: AbortSignal,
  kernels: KernelChoice = "auto",
): Promise<PromiseSettledResult<RunResult>[]> {
  const group = openGroup(list.length, { kernels });
  return Promise.allSettled(list.map(async (opts, i) => {
    try {
      return await run(opts, reporters[i], signal, (o: BackendOptions) => group.join(i, o));
    } finally {
      group.leave(i); // if it never joined, or failed before its backend was destroyed
    }
  }));
}
