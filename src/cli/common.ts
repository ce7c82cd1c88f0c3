/**
 * What every command-line tool shares: its entry point, how errors end it, and how batch runs
 * show their progress and stop.
 */

import { runAll, type RunOutcome, type RunSpec } from "../batch_runs.ts";
import { UserError } from "../errors.ts";
import { ioError } from "../files.ts";
import {
  type Command,
  defineCommand,
  type Flag,
  type FlagGroups,
  UsageError,
  type Values,
} from "./flags.ts";
import { AUTO_REPLICAS, MAX_REPLICAS } from "../backend.ts";
import { resolveOptions, TRAIN_FLAGS, type TrainValues } from "./train_options.ts";

/**
 * Runs a tool: parses its flags (printing the generated --help when asked) and calls `main`.
 * A UserError (bad input) becomes one line on stderr and exit code 1, a bad flag exit code 2;
 * anything else is a bug and keeps its stack trace.
 */
export async function runCommand<G extends FlagGroups>(
  command: Command<G>,
  main: (values: Values<G>, positionals: string[]) => Promise<number | void>,
): Promise<never> {
  try {
    const { values, positionals } = command.parse(Deno.args);
    if (values.help) {
      console.log(command.help());
      Deno.exit(0);
    }
    const code = await main(values, positionals);
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

/** How many runs a batch trains at once: the flags of sweeps and experiments. */
export const BATCH_FLAGS = {
  jobs: {
    kind: "int",
    arg: "N",
    min: 1,
    max: 64,
    help: "groups of runs (or runs alone) trained at a time, each a process on the WebGPU " +
      "adapter (on llvmpipe, 1 per 2 cores)",
    default: 1,
  },
  replicas: {
    kind: "string",
    arg: "N|auto",
    help: "the most runs of one shape (the same model but for its initialization and " +
      "BatchNorm momentum, batch and data) trained as one group, in the same dispatches; " +
      `auto: as many as WebGPU's default limits take, at most ${AUTO_REPLICAS}, on a GPU, and ` +
      "each alone on a software adapter such as llvmpipe (where a group is slower); 1: each alone",
    default: "auto",
  },
} as const satisfies Readonly<Record<string, Flag>>;

/** --replicas' value. */
export function replicasOf(value: string): number | "auto" {
  if (value === "auto") return value;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) {
    throw new UsageError(
      `--replicas: 'auto' or a whole number from 1 to ${MAX_REPLICAS}, not '${value}'`,
    );
  }
  return n;
}

/** The signals that stop a batch (each child saving its checkpoint), with their numbers. */
const STOP_SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

/**
 * Runs batch runs in `dir` from a terminal: one progress line (rewritten in place on a terminal,
 * a line every second or so otherwise), and Ctrl-C, SIGTERM or SIGHUP stops them all, each
 * saving its checkpoint, so the same command run again goes on. `stoppedBy` is the exit code
 * such a stop should end with (128 + the signal), or null.
 */
export async function runInTerminal(
  dir: string,
  specs: readonly RunSpec[],
  opts: { jobs: number; replicas: number | "auto"; redo?: boolean; skipFailed?: boolean },
): Promise<{ outcomes: RunOutcome[]; stoppedBy: number | null }> {
  const stop = new AbortController();
  let stoppedBy: number | null = null;
  const listeners = (Object.keys(STOP_SIGNALS) as (keyof typeof STOP_SIGNALS)[]).map((sig) => {
    const listener = () => {
      if (!stop.signal.aborted) {
        console.error(
          `\n${sig}: stopping the runs (each saves a checkpoint); run again to go on`,
        );
      }
      stoppedBy ??= 128 + STOP_SIGNALS[sig];
      stop.abort();
    };
    Deno.addSignalListener(sig, listener);
    return [sig, listener] as const;
  });
  const tty = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  try {
    const outcomes = await runAll(dir, specs, {
      ...opts,
      signal: stop.signal,
      progress: (line) =>
        tty ? Deno.stdout.writeSync(enc.encode(`\r\x1b[2K${line}`)) : console.log(line),
    });
    if (tty) console.log("");
    for (const o of outcomes.filter((o) => o.status === "failed")) {
      console.error(`run ${o.spec.name} failed: ${o.error}`);
    }
    return { outcomes, stoppedBy };
  } finally {
    for (const [sig, listener] of listeners) Deno.removeSignalListener(sig, listener);
  }
}

/**
 * One run of a batch from its train flags, every flag checked as `deno task train` checks it
 * and resolved as it resolves them, before any run starts.
 */
export async function resolveSpec(
  name: string,
  dir: string,
  args: string[],
  values: Record<string, string> = {},
): Promise<RunSpec> {
  const opts = await resolveOptions(TRAIN.parse(args).values as TrainValues);
  return {
    name,
    dir,
    args,
    steps: opts.train.steps,
    values,
    backend: opts.backend,
    kernels: opts.kernels,
    asked: {
      model: opts.model,
      train: opts.train,
      seed: opts.seed,
      schedule: opts.schedule,
      dataPath: opts.dataPath,
    },
  };
}

const TRAIN = defineCommand({ summary: "", usage: "", groups: TRAIN_FLAGS });

/** Makes an output directory, or says in one line why it cannot be one. */
export async function outputDir(path: string): Promise<void> {
  if (path === "") throw new UsageError("--out: no directory given");
  const info = await Deno.stat(path).catch(() => null);
  if (info && !info.isDirectory) throw new UserError(`${path}: exists and is not a directory`);
  await Deno.mkdir(path, { recursive: true }).catch((e) => {
    throw ioError(path, "create it", e);
  });
}
