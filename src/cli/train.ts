/** `deno task train`: trains a model on a names file; see --help. */

import { UserError } from "../errors.ts";
import { readUserFile, writeFileAtomic } from "../files.ts";
import { duration } from "../format.ts";
import { plotRun } from "../plots.ts";
import { run, type RunOptions, type RunReporter, type RunResult } from "../run.ts";
import { runGroup } from "../run_group.ts";
import type { Progress } from "../training.ts";
import { CHECKPOINT_FILE, LOG_FILE, RUN_FILE } from "../run_dir.ts";
import { runCommand } from "./common.ts";
import { defineCommand, type FlagGroups, UsageError, type Values } from "./flags.ts";
import { DEFAULT_SEED, resolveOptions, TRAIN_FLAGS, type TrainValues } from "./train_options.ts";

/** The file --seeds writes in --out: each seed's losses, their mean and spread. */
export const SEEDS_FILE = "seeds.json";

const GROUP_FLAGS = {
  "Many runs at once (on one device, in the same dispatches)": {
    seeds: {
      kind: "int",
      arg: "K",
      min: 1,
      max: 256,
      help: `train K runs at once, of seeds --seed, --seed + 1, ... (each in --out/seed=S, its ` +
        `own run), and report each one's losses and their mean and spread (${SEEDS_FILE})`,
      default: 1,
    },
    runs: {
      kind: "string",
      arg: "FILE",
      help: "train the runs FILE lists at once: a JSON array of runs, each the array of its " +
        'train flags with its own --out, e.g. [["--lr", "0.05", "--out", "a"], ["--out", "b"]] ' +
        "(runs of another shape than the first are refused)",
    },
  },
} as const satisfies FlagGroups;

const command = defineCommand({
  summary: "Train a character-level MLP (makemore part 3) on a list of names.",
  usage: "deno task train [options]",
  groups: { ...TRAIN_FLAGS, ...GROUP_FLAGS },
  notes: `Ctrl-C (or SIGTERM, SIGHUP) stops after the current chunk of steps and saves a checkpoint;
--resume continues it with exactly the losses an uninterrupted run would have had. A second
Ctrl-C quits at once, keeping the last checkpoint.

Runs trained at once (--seeds, --runs) share one device: each step of every run goes in the
same dispatches, and each run is exactly what it would be alone (its directory, checkpoint,
log and losses). Their settings may differ in what keeps the shapes (seed, learning rate and
schedule, initialization, BatchNorm momentum); a run that goes NaN stops alone. On a software
adapter (llvmpipe) a group is no faster than its runs one after another: the design pays on a
GPU (BENCHMARKS.md).`,
});

type CommandValues = Values<typeof command.groups>;

/**
 * A hook for tests that stop a run with a signal: with MAKEMORE_HOLD_AT_STEP=N in the environment
 * (and --allow-env), the run waits at the first chunk boundary at or after step N, after saying
 * so (`{"event":"held"}` with --json), until `stopped` resolves. A signal sent then finds the run
 * still going however fast the machine is, where one sent "soon after it starts" may come too
 * late.
 */
function holdAt(): number {
  const name = "MAKEMORE_HOLD_AT_STEP";
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return Infinity;
  }
  const v = Number(Deno.env.get(name) ?? NaN);
  return Number.isInteger(v) && v > 0 ? v : Infinity;
}

/** Progress as a live bar on a terminal, plain lines otherwise, JSON, or nothing. */
function makeReporter(
  mode: "tty" | "plain" | "json" | "quiet",
  stopped: Promise<void>,
): RunReporter & { end(): void } {
  const enc = new TextEncoder();
  const write = (s: string) => Deno.stdout.writeSync(enc.encode(s));
  let lastPlain = 0;
  let bar = false;
  const hold = holdAt();
  let held = false;
  const line = (p: Progress) =>
    `step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  ${p.stepsPerSecond.toFixed(0)} steps/s` +
    `  ETA ${duration(p.etaSeconds)}`;
  const show = (p: Progress) => {
    if (p.valLoss !== undefined) {
      if (bar) write("\r\x1b[2K");
      console.log(`step ${p.step}: val loss ${p.valLoss.toFixed(4)}`);
      bar = false;
      return;
    }
    if (mode === "tty") {
      const width = 24;
      const filled = Math.round((width * p.step) / p.steps);
      write(`\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${line(p)}`);
      bar = true;
    } else if (performance.now() - lastPlain > 10_000 || p.step === p.steps) {
      console.log(line(p));
      lastPlain = performance.now();
    }
  };
  return {
    start({ backend, params, dataset, resumedFrom }) {
      if (mode === "quiet" || mode === "json") {
        if (mode === "json") {
          console.log(JSON.stringify({
            event: "start",
            backend: backend.kind,
            adapter: backend.adapter,
            params,
            vocab: dataset.vocab.size,
            examples: dataset.examples.train.n,
            resumed_from: resumedFrom,
          }));
        }
        return;
      }
      console.log(`backend: ${backend.kind} (${backend.adapter})`);
      console.log(
        `data: ${dataset.words.length} words, vocabulary ${dataset.vocab.size}, examples ` +
          `${dataset.examples.train.n} train / ${dataset.examples.val.n} val / ` +
          `${dataset.examples.test.n} test`,
      );
      console.log(`parameters: ${params.toLocaleString("en-US")}`);
      if (resumedFrom) console.log(`resuming from step ${resumedFrom}`);
    },
    progress(p) {
      const wait = !held && p.step >= hold && p.step < p.steps;
      held ||= wait;
      if (mode === "json") console.log(JSON.stringify({ event: "progress", ...p }));
      else if (mode !== "quiet") show(p);
      if (!wait) return;
      if (mode === "json") console.log(JSON.stringify({ event: "held", step: p.step }));
      // A pending promise alone does not keep Deno's event loop alive (nor do signal
      // listeners): a timer does, until the signal comes.
      const alive = setInterval(() => {}, 1000);
      return stopped.finally(() => clearInterval(alive));
    },
    note(text) {
      if (mode === "quiet") return;
      if (mode === "json") console.log(JSON.stringify({ event: "note", text }));
      else {
        if (bar) write("\r\x1b[2K");
        bar = false;
        console.log(text);
      }
    },
    end() {
      if (bar) write("\n");
      bar = false;
    },
  };
}

/** The signals that stop a run gracefully (a second one quits at once), with their numbers:
 * the exit code after such a stop is 128 + the number, as a shell reports a signal. */
const STOP_SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
type StopSignal = keyof typeof STOP_SIGNALS;

type Mode = "tty" | "plain" | "json" | "quiet";

const modeOf = (values: TrainValues): Mode =>
  values.quiet ? "quiet" : values.json ? "json" : Deno.stdout.isTerminal() ? "tty" : "plain";

/**
 * Ctrl-C, SIGTERM and SIGHUP stop the run(s) at the next chunk boundary (`stop`), a second one
 * at once; `code()` is the exit code of such a stop (128 + the signal); `remove()` when done.
 */
function stopSignals(reporter: () => { note(text: string): void; end(): void }) {
  const stop = new AbortController();
  const stopped = new Promise<void>((r) => stop.signal.addEventListener("abort", () => r()));
  let stoppedBy: StopSignal = "SIGINT";
  const listeners = Object.keys(STOP_SIGNALS).map((name) => {
    const sig = name as StopSignal;
    const listener = () => {
      if (stop.signal.aborted) {
        reporter().end();
        console.error("error: interrupted twice; stopped at once, keeping the last checkpoint");
        Deno.exit(128 + STOP_SIGNALS[sig]);
      }
      stoppedBy = sig;
      reporter().note(
        `${sig === "SIGINT" ? "interrupted" : `${sig} received`}: finishing the current chunk ` +
          "and saving a checkpoint (Ctrl-C again to quit now)",
      );
      stop.abort();
    };
    Deno.addSignalListener(sig, listener);
    return [sig, listener] as const;
  });
  return {
    signal: stop.signal,
    stopped,
    code: () => 128 + STOP_SIGNALS[stoppedBy],
    remove: () => {
      for (const [sig, listener] of listeners) Deno.removeSignalListener(sig, listener);
    },
  };
}

async function main(values: CommandValues): Promise<number> {
  if (values.runs !== undefined || values.seeds > 1) return await mainGroup(values);
  const opts = await resolveOptions(values);
  const mode = modeOf(values);
  const stop = stopSignals(() => reporter);
  const reporter = makeReporter(mode, stop.stopped);
  try {
    const result = await run(opts, reporter, stop.signal);
    reporter.end();
    const ck = `${opts.outDir}/${CHECKPOINT_FILE}`;
    if (result.interrupted) {
      console.error(`interrupted at step ${result.step}; saved ${ck}; continue with --resume`);
      return stop.code();
    }
    const l = result.losses!;
    const loss = (x: number) => Number.isFinite(x) ? x.toFixed(4) : "n/a";
    if (mode === "json") {
      console.log(
        JSON.stringify({
          event: "done",
          step: result.step,
          losses: result.losses,
          samples: result.samples,
          train_seconds: result.trainSeconds,
        }),
      );
    } else {
      console.log(
        `trained ${result.step} steps in ${duration(result.trainSeconds)} ` +
          `(${((result.trainSeconds / result.step) * 1e6).toFixed(0)} us/step)`,
      );
      console.log(`loss: train ${loss(l.train)}  val ${loss(l.val)}  test ${loss(l.test)}`);
      if (result.samples?.length) {
        console.log("samples:");
        for (const s of result.samples) {
          console.log(`  ${s.name.padEnd(16)} ${s.inTrain ? "(in the training set)" : "(new)"}`);
        }
      }
      console.log(`wrote ${ck}, ${opts.outDir}/${RUN_FILE}, ${opts.outDir}/${LOG_FILE}`);
    }
    if (!values["no-plots"]) {
      const figures = await plotRun(opts.outDir);
      if (mode !== "json") {
        console.log(`figures: ${figures.map((f) => `${opts.outDir}/${f}`).join(", ")}`);
      }
    }
    return 0;
  } finally {
    reporter.end();
    stop.remove();
  }
}

/** Flags a run listed in --runs may not have: they are the group's. */
const GROUP_ONLY = ["runs", "seeds", "json", "quiet"] as const;

/** The runs of a group: --seeds' copies of the flags, or the runs --runs lists. */
async function groupOptions(values: CommandValues): Promise<{ label: string; opts: RunOptions }[]> {
  if (values.runs !== undefined) {
    if (values.seeds > 1) {
      throw new UsageError("--runs lists the runs; --seeds makes them: not both");
    }
    let listed: unknown;
    try {
      listed = JSON.parse(new TextDecoder().decode(await readUserFile(values.runs, "runs file")));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${values.runs}: not JSON (${(e as Error).message})`);
    }
    if (
      !Array.isArray(listed) || listed.length === 0 ||
      !listed.every((a) => Array.isArray(a) && a.every((x) => typeof x === "string"))
    ) {
      throw new UserError(`${values.runs}: not a non-empty array of arrays of train flags`);
    }
    return await Promise.all((listed as string[][]).map(async (args, i) => {
      const where = `${values.runs}, run ${i + 1}`;
      let v: CommandValues;
      try {
        v = command.parse(args).values;
      } catch (e) {
        throw new UserError(`${where}: ${(e as Error).message}`);
      }
      const own = GROUP_ONLY.find((f) =>
        args.some((a) => a === `--${f}` || a.startsWith(`--${f}=`))
      );
      if (own) throw new UserError(`${where}: --${own} is the group's, not a run's`);
      if (!args.some((a) => a === "--out" || a.startsWith("--out="))) {
        throw new UserError(`${where}: give it its own --out`);
      }
      const opts = await resolveOptions(v);
      // The group's device and kernels are every run's: a run may name them only as they are
      // (a resumed one, whose flags are just --out and --resume, takes the group's kernels).
      for (const f of ["backend", "kernels"] as const) {
        const named = args.some((a) => a === `--${f}` || a.startsWith(`--${f}=`));
        if (named && opts[f] !== values[f]) {
          throw new UserError(`${where}: --${f} ${opts[f]} is not the group's (${values[f]})`);
        }
      }
      return {
        label: opts.outDir,
        opts: { ...opts, kernels: values.kernels as RunOptions["kernels"] },
      };
    }));
  }
  const first = values.seed ?? DEFAULT_SEED;
  const seeds = Array.from({ length: values.seeds }, (_, i) => (first + i) >>> 0);
  return await Promise.all(seeds.map(async (seed) => {
    const out = `${values.out}/seed=${seed}`;
    // A resumed seed reads its own checkpoint; a new one takes the flags with its seed.
    const opts = await resolveOptions({ ...values, out, seed });
    return { label: `seed=${seed}`, opts };
  }));
}

/** Mean and sample standard deviation. */
function spread(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(xs.length - 1, 1);
  return { mean, std: Math.sqrt(v) };
}

/** --seeds and --runs: the runs as one group of replicas (src/run_group.ts). */
async function mainGroup(values: CommandValues): Promise<number> {
  if (values.backend !== "webgpu") {
    throw new UsageError("runs at once share a WebGPU device: not with --backend cpu");
  }
  const members = await groupOptions(values);
  const mode = modeOf(values);
  const out = (line: string) => mode !== "quiet" && mode !== "json" && console.log(line);
  const stop = stopSignals(() => human);
  // Each run's reporter: JSON lines carry the run's index and label; otherwise one line for
  // the group (its slowest run), and each run's notes under its label.
  const steps = members.map(() => 0);
  const losses = members.map(() => NaN);
  let last = 0;
  const human = makeReporter(mode === "json" ? "quiet" : mode, stop.stopped);
  const hold = makeReporter("quiet", stop.stopped);
  const reporters: RunReporter[] = members.map(({ label }, i) => ({
    start(info) {
      if (mode === "json") {
        console.log(
          JSON.stringify({ event: "start", run: i, label, adapter: info.backend.adapter }),
        );
      } else if (i === 0) {
        out(
          `backend: ${info.backend.kind} (${info.backend.adapter}), ${members.length} runs at once`,
        );
        out(`parameters: ${info.params.toLocaleString("en-US")} each`);
      }
      if (info.resumedFrom) out(`${label}: resuming from step ${info.resumedFrom}`);
    },
    progress(p) {
      steps[i] = p.step;
      losses[i] = p.loss;
      if (mode === "json") {
        console.log(JSON.stringify({ event: "progress", run: i, label, ...p }));
        // The test hook holds the group where its first run reaches the step.
        const held = hold.progress(p);
        if (held) console.log(JSON.stringify({ event: "held", run: i, label, step: p.step }));
        return held;
      }
      if (p.valLoss !== undefined) {
        out(`${label} step ${p.step}: val loss ${p.valLoss.toFixed(4)}`);
        return;
      }
      const slowest = steps.indexOf(Math.min(...steps));
      if (i !== slowest && performance.now() - last < 1000) return;
      last = performance.now();
      const mean = spread(losses.filter(Number.isFinite)).mean;
      return human.progress({ ...p, step: steps[slowest], loss: mean });
    },
    note(text) {
      if (mode === "json") console.log(JSON.stringify({ event: "note", run: i, label, text }));
      else human.note(`${label}: ${text}`);
    },
  }));
  let results: PromiseSettledResult<RunResult>[];
  try {
    results = await runGroup(
      members.map((m) => m.opts),
      reporters,
      stop.signal,
      values.kernels as RunOptions["kernels"],
    );
  } finally {
    human.end();
    stop.remove();
  }
  const loss = (x: number) => Number.isFinite(x) ? x.toFixed(4) : "n/a";
  let failed = 0;
  let interrupted = 0;
  const finished: { label: string; losses: NonNullable<RunResult["losses"]> }[] = [];
  for (const [i, r] of results.entries()) {
    const { label, opts } = members[i];
    if (r.status === "rejected") {
      failed++;
      const why = r.reason instanceof Error ? r.reason.message : String(r.reason);
      if (!(r.reason instanceof UserError) && !(r.reason instanceof UsageError)) {
        console.error(r.reason);
      }
      if (mode === "json") {
        console.log(JSON.stringify({ event: "failed", run: i, label, error: why }));
      }
      console.error(`error: ${label}: ${why}`);
      continue;
    }
    if (r.value.interrupted) {
      interrupted++;
      if (mode === "json") {
        console.log(JSON.stringify({ event: "interrupted", run: i, label, step: r.value.step }));
      }
      continue;
    }
    const l = r.value.losses!;
    finished.push({ label, losses: l });
    if (mode === "json") {
      console.log(JSON.stringify({
        event: "done",
        run: i,
        label,
        step: r.value.step,
        losses: l,
        samples: r.value.samples,
        train_seconds: r.value.trainSeconds,
      }));
    } else {
      out(
        `${label.padEnd(12)} loss: train ${loss(l.train)}  val ${loss(l.val)}  test ${
          loss(l.test)
        }`,
      );
    }
    if (!values["no-plots"]) await plotRun(opts.outDir);
  }
  if (values.runs === undefined && finished.length === members.length && members.length > 1) {
    const split = (k: "train" | "val" | "test") => spread(finished.map((f) => f.losses[k]));
    const summary = { train: split("train"), val: split("val"), test: split("test") };
    out(
      `mean +- std over ${finished.length} seeds: ` +
        (["train", "val", "test"] as const).map((k) =>
          `${k} ${loss(summary[k].mean)} +- ${loss(summary[k].std)}`
        ).join("  "),
    );
    await writeFileAtomic(
      `${values.out}/${SEEDS_FILE}`,
      JSON.stringify({ seeds: finished, ...summary }, null, 2) + "\n",
    );
    out(`wrote ${values.out}/${SEEDS_FILE}`);
  }
  if (interrupted) {
    console.error(
      `interrupted: ${interrupted} of ${members.length} runs saved a checkpoint; continue with ` +
        "the same command and --resume",
    );
    return stop.code();
  }
  return failed ? 1 : 0;
}

if (import.meta.main) runCommand(command, main);
