/** `deno task train`: trains a model on a names file; see --help. */

import { duration } from "../format.ts";
import { plotRun } from "../plots.ts";
import { run, type RunReporter } from "../run.ts";
import type { Progress } from "../training.ts";
import { CHECKPOINT_FILE, LOG_FILE, RUN_FILE } from "../run_dir.ts";
import { runCommand } from "./common.ts";
import { defineCommand } from "./flags.ts";
import { resolveOptions, TRAIN_FLAGS, type TrainValues } from "./train_options.ts";

const command = defineCommand({
  summary: "Train a character-level MLP (makemore part 3) on a list of names.",
  usage: "deno task train [options]",
  groups: TRAIN_FLAGS,
  notes: `Ctrl-C (or SIGTERM, SIGHUP) stops after the current chunk of steps and saves a checkpoint;
--resume continues it with exactly the losses an uninterrupted run would have had. A second
Ctrl-C quits at once, keeping the last checkpoint.`,
});

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

async function main(values: TrainValues): Promise<number> {
  const opts = await resolveOptions(values);
  const mode = values.quiet
    ? "quiet"
    : values.json
    ? "json"
    : Deno.stdout.isTerminal()
    ? "tty"
    : "plain";
  const stop = new AbortController();
  const stopped = new Promise<void>((r) => stop.signal.addEventListener("abort", () => r()));
  const reporter = makeReporter(mode, stopped);
  let stoppedBy: StopSignal = "SIGINT";
  const listeners = Object.keys(STOP_SIGNALS).map((name) => {
    const sig = name as StopSignal;
    const listener = () => {
      if (stop.signal.aborted) {
        reporter.end();
        console.error("error: interrupted twice; stopped at once, keeping the last checkpoint");
        Deno.exit(128 + STOP_SIGNALS[sig]);
      }
      stoppedBy = sig;
      reporter.note(
        `${sig === "SIGINT" ? "interrupted" : `${sig} received`}: finishing the current chunk ` +
          "and saving a checkpoint (Ctrl-C again to quit now)",
      );
      stop.abort();
    };
    Deno.addSignalListener(sig, listener);
    return [sig, listener] as const;
  });
  try {
    const result = await run(opts, reporter, stop.signal);
    reporter.end();
    const ck = `${opts.outDir}/${CHECKPOINT_FILE}`;
    if (result.interrupted) {
      console.error(`interrupted at step ${result.step}; saved ${ck}; continue with --resume`);
      return 128 + STOP_SIGNALS[stoppedBy];
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
    for (const [sig, listener] of listeners) Deno.removeSignalListener(sig, listener);
  }
}

if (import.meta.main) runCommand(command, main);
