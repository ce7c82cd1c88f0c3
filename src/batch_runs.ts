/**
 * Many training runs, for the experiments and sweeps, each in a run directory of its own. Runs
 * of one shape on WebGPU (src/gpu/group.ts: the same model but for its initialization and
 * BatchNorm momentum, the same batch and data; any seed, learning rate and schedule) are
 * trained together, up to `replicas` of them as one group in the same dispatches: each group
 * is one `deno task train --runs` (a subprocess, so that a crash takes one group down, not the
 * batch), and each of its runs is exactly what it would be alone. `jobs` groups run at a time
 * under one progress line.
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
import { parseWords, sha256Hex, Vocab } from "./data.ts";
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
import {
  adapterIsFallback,
  type BackendKind,
  type KernelChoice,
  maxReplicas,
  shapeKey,
} from "./backend.ts";

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
  /** Where it trains: runs of one shape on WebGPU share a device. */
  readonly backend: BackendKind;
  readonly kernels: KernelChoice;
}

export type RunStatus = "finished" | "skipped" | "failed" | "interrupted";

export interface RunOutcome {
  readonly spec: Omit<RunSpec, "asked" | "backend" | "kernels">;
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
  /** Groups trained at a time. */
  readonly jobs: number;
  /** The most runs of one shape trained as one group ("auto": as many as the device takes). */
  readonly replicas: number | "auto";
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

/** The group a run may train in: runs of one key share a device (null: it trains alone). */
function groupKey(spec: RunSpec, vocabOf: (path: string) => number): string | null {
  if (spec.backend !== "webgpu") return null;
  const { dataPath, model, train } = spec.asked;
  const config = { ...model, vocabSize: vocabOf(dataPath) };
  return JSON.stringify([shapeKey(config, train.batchSize), dataPath, spec.kernels]);
}

/**
 * The planned runs that train, in groups of at most `replicas` runs of one key, in the order
 * of their first run; each other run alone.
 */
export function groupRuns<T extends { spec: RunSpec }>(
  runs: readonly T[],
  replicas: number | "auto",
  vocabOf: (path: string) => number,
): T[][] {
  const groups = new Map<string, T[][]>();
  const out: T[][] = [];
  for (const r of runs) {
    const key = groupKey(r.spec, vocabOf);
    const { model, train, dataPath } = r.spec.asked;
    const most = replicas === "auto"
      ? maxReplicas({ ...model, vocabSize: vocabOf(dataPath) }, train.batchSize)
      : replicas;
    const open = key === null ? undefined : groups.get(key)?.at(-1);
    if (open && open.length < most) {
      open.push(r);
      continue;
    }
    const fresh = [r];
    out.push(fresh);
    if (key !== null) groups.set(key, [...(groups.get(key) ?? []), fresh]);
  }
  return out;
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

  type Planned = { spec: RunSpec; plan: Plan & { action: "train" | "overwrite" | "resume" } };

  /** One group (or one run): one `train` child, its runs' outcomes from its JSON lines. */
  const trainGroup = async (group: readonly Planned[]): Promise<RunOutcome[]> => {
    if (opts.signal.aborted) {
      return group.map(({ spec }) => ({ spec, status: "interrupted", report: null }));
    }
    for (const { spec } of group) await Deno.remove(`${spec.dir}/${FAILED_FILE}`).catch(() => {});
    const single = group.length === 1;
    const runsFile = single ? null : await Deno.makeTempFile({ prefix: "makemore-runs-" });
    if (runsFile) {
      const runs = group.map(({ spec, plan }) => trainArgs(spec, plan.action));
      await Deno.writeTextFile(runsFile, JSON.stringify(runs));
    }
    const [first] = group;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-write",
        // Only the test hook that holds a run at a step (src/cli/train.ts).
        "--allow-env=MAKEMORE_HOLD_AT_STEP",
        script,
        ...(runsFile
          ? ["--runs", runsFile, "--kernels", first.spec.kernels, "--no-plots"]
          : trainArgs(first.spec, first.plan.action)),
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    children.add(child);
    const stderr = new Response(child.stderr).text();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    // What each run of the group said last: done, failed (with its line), interrupted.
    const ended = new Map<number, { status: RunStatus; error?: string }>();
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
          const i = typeof e.run === "number" ? e.run : 0;
          const spec = group[i]?.spec;
          if (!spec) continue;
          if (e.event === "progress" && Number.isFinite(e.step)) done.set(spec.name, e.step);
          // Only with the test hook MAKEMORE_HOLD_AT_STEP (src/cli/train.ts): say so at once.
          if (e.event === "held") opts.progress(`run ${spec.name} holds at step ${e.step}`);
          if (e.event === "done") ended.set(i, { status: "finished" });
          if (e.event === "failed") ended.set(i, { status: "failed", error: String(e.error) });
          if (e.event === "interrupted") ended.set(i, { status: "interrupted" });
        } catch { /* not ours */ }
      }
      report();
    }
    const status = await child.status;
    children.delete(child);
    if (runsFile) await Deno.remove(runsFile).catch(() => {});
    const err = (await stderr).trim().split("\n").filter(Boolean);
    const stoppedBySignal = opts.signal.aborted || status.code === 130 || status.code === 143 ||
      status.code === 129;
    const childError = err.find((l) => l.startsWith("error: "))?.slice(7) ?? err.at(-1) ??
      `exit code ${status.code}`;
    return await Promise.all(group.map(async ({ spec }, i) => {
      // A lone run says "done" and exits 0; one that says nothing ended as its exit code says.
      const said = ended.get(i) ??
        (single && status.code === 0
          ? { status: "finished" as const }
          : stoppedBySignal
          ? { status: "interrupted" as const }
          : { status: "failed" as const, error: childError });
      if (said.status === "finished") {
        done.set(spec.name, spec.steps);
        finishedRuns++;
        report(true);
        return { spec, status: "finished", report: await readRunReport(spec.dir) };
      }
      if (said.status === "failed") {
        const error = said.error ?? childError;
        await writeFileAtomic(
          `${spec.dir}/${FAILED_FILE}`,
          JSON.stringify({ error, exit: status.code, at: new Date().toISOString() }) + "\n",
        ).catch(() => {}); // a directory that could not be written has its own error
        return { spec, status: "failed", report: null, error };
      }
      return { spec, status: "interrupted", report: null };
    }));
  };

  try {
    const outcomes = new Map<string, RunOutcome>();
    const queue: Planned[][] = [];
    const training: Planned[] = [];
    specs.forEach((spec, i) => {
      const plan = plans[i];
      if (plan.action === "skip" || plan.action === "failed") {
        done.set(spec.name, spec.steps);
        finishedRuns++;
        outcomes.set(
          spec.name,
          plan.action === "skip"
            ? { spec, status: "skipped", report: plan.report }
            : { spec, status: "failed", report: null, error: plan.error },
        );
      } else training.push({ spec, plan });
    });
    const vocab = new Map<string, number>();
    for (const { spec } of training) {
      const path = spec.asked.dataPath;
      if (!vocab.has(path)) vocab.set(path, await vocabSizeOf(path));
    }
    // On a software adapter a group is slower than its runs one after another (it gives up
    // the uniform windows, BENCHMARKS.md): there `auto` trains each alone.
    const replicas = opts.replicas === "auto" && training.some((t) =>
        t.spec.backend === "webgpu"
      ) &&
        await adapterIsFallback()
      ? 1
      : opts.replicas;
    queue.push(...groupRuns(training, replicas, (p) => vocab.get(p)!));
    const workers = Array.from({ length: Math.max(1, opts.jobs) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const results = await trainGroup(next);
        results.forEach((o) => outcomes.set(o.spec.name, o));
      }
    });
    await Promise.all(workers);
    report(true);
    return specs.map((s) => outcomes.get(s.name)!);
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
  }
}

/** The vocabulary a data file gives a run (its characters and the end token). */
async function vocabSizeOf(path: string): Promise<number> {
  return Vocab.fromWords(parseWords(await readUserFile(path, "data file"), path)).size;
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
