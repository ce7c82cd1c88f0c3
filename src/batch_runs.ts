/**
 * Many training runs, for the experiments and sweeps: each a `deno task train` of its own (a
 * subprocess, so runs in parallel do not share a device, and a crash takes one run down, not
 * the batch), in a run directory of its own. `jobs` run at a time under one progress line.
 *
 * What is already in a run's directory is looked at before any run starts (planRuns), and a run
 * is reused only when it is the run asked for (src/run_setup.ts: every setting and the data's
 * sha256): a finished one is skipped, an interrupted one resumed, one that failed before (it
 * left a FAILED_FILE, or files but no checkpoint) tried again unless `skipFailed`; a directory
 * holding another run refuses the whole batch in one line, naming the setting that differs,
 * unless `redo` says to train it again. The batch's directory is locked while it runs: a second
 * batch there is refused. A stop (Ctrl-C, SIGTERM, SIGHUP: the caller's signal) reaches every
 * child, which saves a checkpoint: running the batch again picks up where it stopped.
 */

import { type Checkpoint, decodeCheckpoint } from "./checkpoint.ts";
import { sha256Hex } from "./data.ts";
import { UserError } from "./errors.ts";
import { exists, ioError, readUserFile, writeFileAtomic } from "./files.ts";
import {
  checkLock,
  CHECKPOINT_FILE,
  lockDirectory,
  readRunReport,
  RUN_FILE,
  runFilesIn,
} from "./run_dir.ts";
import { describe, differences, identityOf, type RunIdentity } from "./run_setup.ts";

/** What a run is asked to be: its identity, with the data named by path. */
export interface AskedRun extends Omit<RunIdentity, "dataSha256"> {
  readonly dataPath: string;
}

/** One run: the train flags (without --out), and where it goes. */
export interface RunSpec {
  readonly name: string;
  readonly dir: string;
  readonly args: readonly string[];
  /** Its number of steps, for the progress line. */
  readonly steps: number;
  /** The values that set it apart in its batch (a sweep's axes), for the reports. */
  readonly values: Readonly<Record<string, string>>;
  /** The flags resolved as `deno task train` resolves them: what a reused run must be. */
  readonly asked: AskedRun;
}

export type RunStatus = "finished" | "skipped" | "failed" | "interrupted";

export interface RunOutcome {
  readonly spec: Omit<RunSpec, "asked">;
  readonly status: RunStatus;
  /** The run's run.json, when it finished (now or before). */
  readonly report: Record<string, unknown> | null;
  /** The one line the run failed with. */
  readonly error?: string;
}

/** Left in a run's directory by a run that failed: its one line, for the next batch. */
export const FAILED_FILE = "failed.json";

/** What a batch does with each run, decided before any starts. */
export type Plan =
  | { readonly action: "train" | "overwrite" | "resume" }
  | { readonly action: "skip"; readonly report: Record<string, unknown> | null }
  | { readonly action: "failed"; readonly error: string };

export interface BatchOptions {
  readonly jobs: number;
  readonly signal: AbortSignal;
  readonly progress: (line: string) => void;
  /** Train again the runs whose directory holds another run (else the batch is refused). */
  readonly redo?: boolean;
  /** Leave the runs that failed before as failed (else they are tried again). */
  readonly skipFailed?: boolean;
}

/** The command line that runs one spec (for --print-commands, and for the children). */
export function trainArgs(spec: RunSpec, action: "train" | "overwrite" | "resume"): string[] {
  if (action === "resume") return ["--out", spec.dir, "--resume", "--no-plots"];
  return [
    ...spec.args,
    "--out",
    spec.dir,
    "--no-plots",
    ...(action === "overwrite" ? ["--overwrite"] : []),
  ];
}

async function readFailure(dir: string): Promise<string | null> {
  try {
    const v = JSON.parse(await Deno.readTextFile(`${dir}/${FAILED_FILE}`));
    return typeof v?.error === "string" ? v.error : "failed";
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? null : "failed";
  }
}

/**
 * What to do with each spec, from what its directory holds (see the module comment); refuses
 * the batch, before any run, when a data file cannot be read or a directory holds another run
 * (unless `redo`) or is being written by another process.
 */
export async function planRuns(
  specs: readonly RunSpec[],
  opts: { redo?: boolean; skipFailed?: boolean } = {},
): Promise<Plan[]> {
  const shas = new Map<string, string>();
  for (const s of specs) {
    const path = s.asked.dataPath;
    if (!shas.has(path)) shas.set(path, await sha256Hex(await readUserFile(path, "data file")));
  }
  const plans: Plan[] = [];
  const changed: { spec: RunSpec; why: string }[] = [];
  for (const spec of specs) {
    const info = await Deno.stat(spec.dir).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return null;
      throw ioError(spec.dir, "use it as a run directory", e);
    });
    if (!info) {
      plans.push({ action: "train" });
      continue;
    }
    if (!info.isDirectory) throw new UserError(`${spec.dir}: exists and is not a directory`);
    await checkLock(spec.dir); // a run still writing there (one a killed batch left behind)
    const failure = await readFailure(spec.dir);
    let ck: Checkpoint | null = null;
    if (await exists(`${spec.dir}/${CHECKPOINT_FILE}`)) {
      try {
        ck = decodeCheckpoint(await readUserFile(`${spec.dir}/${CHECKPOINT_FILE}`), spec.dir);
      } catch { /* damaged: tried again below */ }
    }
    if (ck) {
      const asked = { ...spec.asked, dataSha256: shas.get(spec.asked.dataPath)! };
      const [first] = differences(asked, identityOf(ck));
      if (first) {
        changed.push({ spec, why: describe(first) });
        plans.push({ action: "overwrite" });
      } else if (await exists(`${spec.dir}/${RUN_FILE}`)) {
        plans.push({ action: "skip", report: await readRunReport(spec.dir) });
      } else if (failure && opts.skipFailed) {
        plans.push({ action: "failed", error: failure });
      } else plans.push({ action: "resume" }); // interrupted, or failed: from its checkpoint
    } else if (failure || (await runFilesIn(spec.dir)).length) {
      // Killed before its first checkpoint, or failed: nothing to resume from.
      plans.push(
        failure && opts.skipFailed ? { action: "failed", error: failure } : { action: "overwrite" },
      );
    } else plans.push({ action: "train" });
  }
  if (changed.length && !opts.redo) {
    const [{ spec, why }] = changed;
    const more = changed.length > 1 ? ` (and ${changed.length - 1} more runs differ)` : "";
    throw new UserError(
      `${spec.dir} holds another run than the one asked for: ${why}${more}; use another ` +
        "--out, or --redo to train the changed runs again",
    );
  }
  return plans;
}

/**
 * Runs every spec of a batch in `dir`, `jobs` at a time; `progress` gets a line to show now and
 * then. Refused in one line, before any run, as planRuns says, or when another batch holds `dir`.
 */
export async function runAll(
  dir: string,
  specs: readonly RunSpec[],
  opts: BatchOptions,
): Promise<RunOutcome[]> {
  await Deno.mkdir(dir, { recursive: true }).catch((e) => {
    throw ioError(dir, "create it", e);
  });
  const lock = await lockDirectory(dir, "sweep or experiment");
  try {
    const plans = await planRuns(specs, opts);
    return await runPlanned(specs, plans, opts);
  } finally {
    lock.close();
  }
}

async function runPlanned(
  specs: readonly RunSpec[],
  plans: readonly Plan[],
  opts: BatchOptions,
): Promise<RunOutcome[]> {
  const script = new URL("./cli/train.ts", import.meta.url).pathname;
  const done = new Map<string, number>(); // steps done, by run name
  const total = specs.reduce((a, s) => a + s.steps, 0);
  const started = performance.now();
  let finishedRuns = 0;
  let lastLine = 0;
  let lastText = "";
  const report = (force = false) => {
    const now = performance.now();
    if (!force && now - lastLine < 1000) return;
    lastLine = now;
    const steps = [...done.values()].reduce((a, b) => a + b, 0);
    const pct = total ? (100 * steps) / total : 100;
    const seconds = (now - started) / 1000;
    const eta = steps > 0 ? (seconds * (total - steps)) / steps : NaN;
    const text = `${finishedRuns}/${specs.length} runs, step ${steps.toLocaleString("en-US")}/` +
      `${total.toLocaleString("en-US")} (${pct.toFixed(1)}%)`;
    if (text === lastText && !force) return;
    lastText = text;
    opts.progress(text + (Number.isFinite(eta) ? `, ETA ${Math.round(eta)} s` : ""));
  };
  const children = new Set<Deno.ChildProcess>();
  const onAbort = () => {
    for (const c of children) {
      try {
        c.kill("SIGINT");
      } catch { /* already gone */ }
    }
  };
  opts.signal.addEventListener("abort", onAbort);

  const one = async (spec: RunSpec, plan: Plan): Promise<RunOutcome> => {
    if (plan.action === "skip" || plan.action === "failed") {
      done.set(spec.name, spec.steps);
      finishedRuns++;
      return plan.action === "skip"
        ? { spec, status: "skipped", report: plan.report }
        : { spec, status: "failed", report: null, error: plan.error };
    }
    if (opts.signal.aborted) return { spec, status: "interrupted", report: null };
    await Deno.remove(`${spec.dir}/${FAILED_FILE}`).catch(() => {});
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-write",
        // Only the test hook that holds a run at a step (src/cli/train.ts).
        "--allow-env=MAKEMORE_HOLD_AT_STEP",
        script,
        ...trainArgs(spec, plan.action),
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    children.add(child);
    const stderr = new Response(child.stderr).text();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done: end } = await lines.read();
      if (end) break;
      buffered += value;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const line of parts) {
        try {
          const e = JSON.parse(line);
          if (e.event === "progress" && Number.isFinite(e.step)) done.set(spec.name, e.step);
          // Only with the test hook MAKEMORE_HOLD_AT_STEP (src/cli/train.ts): say so at once.
          if (e.event === "held") opts.progress(`run ${spec.name} holds at step ${e.step}`);
        } catch { /* not ours */ }
      }
      report();
    }
    const status = await child.status;
    children.delete(child);
    const err = (await stderr).trim().split("\n").filter(Boolean);
    if (status.code === 0) {
      done.set(spec.name, spec.steps);
      finishedRuns++;
      report(true);
      return { spec, status: "finished", report: await readRunReport(spec.dir) };
    }
    const interrupted = opts.signal.aborted || status.code === 130 || status.code === 143 ||
      status.code === 129;
    const error = err.find((l) => l.startsWith("error: "))?.slice(7) ?? err.at(-1) ??
      `exit code ${status.code}`;
    if (!interrupted) {
      await writeFileAtomic(
        `${spec.dir}/${FAILED_FILE}`,
        JSON.stringify({ error, exit: status.code, at: new Date().toISOString() }) + "\n",
      ).catch(() => {}); // a directory that could not be written has its own error
    }
    return { spec, status: interrupted ? "interrupted" : "failed", report: null, error };
  };

  try {
    const queue = specs.map((spec, i) => ({ spec, plan: plans[i] }));
    const outcomes = new Map<string, RunOutcome>();
    const workers = Array.from({ length: Math.max(1, opts.jobs) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        outcomes.set(next.spec.name, await one(next.spec, next.plan));
      }
    });
    await Promise.all(workers);
    report(true);
    return specs.map((s) => outcomes.get(s.name)!);
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
  }
}

/**
 * A directory name for a run from its settings: "lr=0.1,hidden=200". A path among the values
 * (a swept --data) is named by its file, its slashes turned into "_".
 */
export function slug(values: Readonly<Record<string, string>>): string {
  const s = Object.entries(values).map(([k, v]) => `${k}=${v.replaceAll("/", "_")}`).join(",");
  if (!s) return "base";
  if (/\0/.test(s)) throw new UserError(`a value cannot contain a NUL character: ${s}`);
  return s;
}
