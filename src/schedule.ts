/**
 * How often a run reports, evaluates and saves. Kept in every checkpoint, so that a resumed
 * run goes on as it began.
 */

/** How often a run reports, evaluates and saves. */
export interface Schedule {
  /** Evaluate the val split every this many steps (0: only at the end). */
  readonly evalEvery: number;
  readonly checkpointEvery: number;
  /** Steps per training-loss line of the log. */
  readonly logEvery: number;
  /** Collect diagnostics (src/diagnostics.ts): update ratios every logEvery steps, snapshots. */
  readonly diagnostics: boolean;
  /** Snapshots at initialization, at step 1000, at the end, and every this many steps. */
  readonly diagEvery: number;
  /** Recompute the BatchNorm statistics over the training split after training. */
  readonly calibrate: boolean;
  /** Names sampled at the end. */
  readonly samples: number;
}

export const DEFAULT_SCHEDULE: Schedule = {
  evalEvery: 10_000,
  checkpointEvery: 10_000,
  logEvery: 100,
  diagnostics: true,
  diagEvery: 0,
  calibrate: true,
  samples: 10,
};

const count = (v: unknown, min: number) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min;

/** A schedule read from outside (a checkpoint), or what is wrong with it. */
export function parseSchedule(v: unknown): Schedule | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const s = v as Record<string, unknown>;
  for (const k of ["evalEvery", "diagEvery", "samples"] as const) {
    if (!count(s[k], 0)) return `${k} = ${JSON.stringify(s[k])}`;
  }
  for (const k of ["checkpointEvery", "logEvery"] as const) {
    if (!count(s[k], 1)) return `${k} = ${JSON.stringify(s[k])}`;
  }
  for (const k of ["diagnostics", "calibrate"] as const) {
    if (typeof s[k] !== "boolean") return `${k} = ${JSON.stringify(s[k])}`;
  }
  return v as Schedule;
}
