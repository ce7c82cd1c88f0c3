/// <reference lib="dom" />
/**
 * What the lab page exposes as `globalThis.lab`, for its browser tests (tests/browser_test.ts) and
 * for anyone curious in the developer console.
 */

import type { Comparison } from "../gpu/selftest.ts";
import type { PresetName } from "../model.ts";
import type { Session } from "./session.ts";
import type { Comparison as Compared } from "./compare.ts";

export interface LabHooks {
  readonly session: Session;
  /** The comparison last started (src/lab/compare.ts), or null. */
  comparison(): Compared | null;
  /** True once the page is wired and the bundled names are loaded. */
  ready: boolean;
  /** Destroys the training device from outside, as a driver reset would: a lost device. */
  loseDevice(): void;
  /** Compiles every kernel of every family on a device of its own; their names. */
  compileKernels(): Promise<string[]>;
  /** The kernels against the CPU reference (src/gpu/selftest.ts), on this page's GPU. */
  checkKernels(): Promise<Comparison[]>;
  /** Training speed on this page's GPU (src/gpu/speed.ts), for `deno task bench --browser`. */
  bench(
    preset: PresetName,
    rounds: number,
    chunks: number,
    chunkSteps: number,
  ): Promise<{ usPerStep: number; adapter: string }>;
}

declare global {
  var lab: LabHooks;
}
