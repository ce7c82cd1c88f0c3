/** `deno task sweep`: a grid of training runs over comma-separated flag values; see --help. */

import { type RunSpec, slug, trainArgs } from "../batch_runs.ts";
import { UserError } from "../errors.ts";
import { collect, grid, summarize, valuesOfName, writeSweep } from "../sweep.ts";
import { runCommand, runInTerminal } from "./common.ts";
import { defineCommand, type Flag, type FlagGroups, parseValue, UsageError } from "./flags.ts";
import { resolveOptions, TRAIN_FLAGS, type TrainValues } from "./train_options.ts";

/** Train flags that belong to one run, not to a sweep of them. */
const NOT_SWEPT = new Set(["out", "resume", "overwrite", "json", "quiet", "no-plots"]);

/** The train flags, each value flag taking a comma-separated list: generated, not copied. */
const SWEPT: FlagGroups = Object.fromEntries(
  Object.entries(TRAIN_FLAGS).map(([title, group]) => [
    title.replace(/ \(.*\)$/, ""),
    Object.fromEntries(
      Object.entries(group as Record<string, Flag>).filter(([n]) => !NOT_SWEPT.has(n)).map((
        [name, f],
      ) =>
        f.kind === "bool" ? [name, f] : [name, {
          kind: "string",
          arg: `${f.arg}[,${f.arg}...]`,
          help: f.help + (f.kind === "choice" ? ` (${f.choices.join(", ")})` : ""),
          ...(f.shown ?? f.default !== undefined ? { shown: f.shown ?? String(f.default) } : {}),
        }]
      ),
    ),
  ]),
);

const SWEEP_FLAGS = {
  Sweep: {
    out: { kind: "string", arg: "DIR", help: "the sweep directory", default: "sweep" },
    jobs: {
      kind: "int",
      arg: "N",
      min: 1,
      max: 64,
      help: "runs at a time (each uses the WebGPU adapter; on llvmpipe, 1 per 2 cores)",
      default: 1,
    },
    "print-commands": {
      kind: "bool",
      help: "print one shell command per run (for GNU parallel or a cluster) and stop",
    },
    collect: {
      kind: "bool",
      help: "merge the runs of the sweep directories given as arguments into --out's report",
    },
  },
} as const satisfies FlagGroups;

const command = defineCommand({
  summary: "Train a grid of runs over comma-separated values of any training flag, and report.",
  usage: "deno task sweep [--out DIR] [--jobs N] --FLAG V1,V2,... [...]\n" +
    "       deno task sweep --collect [--out DIR] SWEEP_DIR...",
  groups: { ...SWEEP_FLAGS, ...SWEPT },
  positionals: true,
  notes: `Example: deno task sweep --preset lecture --lr 0.05,0.1,0.2 --hidden 100,200 --steps 20000
Each run goes to DIR/runs/NAME (NAME from its values, e.g. lr=0.1,hidden=200); a finished run is
skipped when the sweep runs again, an interrupted one resumed. DIR gets sweep.json, sweep.csv,
report.html and a figure of val loss against each swept flag.`,
});

const trainFlags: Record<string, Flag> = Object.assign({}, ...Object.values(TRAIN_FLAGS));

/** Shell quoting for --print-commands. */
const quote = (s: string) => /^[\w.,=\/:+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;

async function main(raw: Record<string, unknown>, positionals: string[]): Promise<number> {
  const out = raw.out as string;
  if (out === "") throw new UsageError("--out: no directory given");
  if (raw.collect) {
    if (positionals.length === 0) throw new UsageError("--collect needs sweep directories");
    const outcomes = await collect(positionals);
    if (outcomes.length === 0) throw new UserError(`no runs in ${positionals.join(", ")}/runs/`);
    const params = [...new Set(outcomes.flatMap((o) => Object.keys(valuesOfName(o.spec.name))))];
    await Deno.mkdir(out, { recursive: true });
    const result = summarize(params, outcomes);
    const files = await writeSweep(out, result, `Sweep of ${positionals.join(", ")}`);
    console.log(`collected ${outcomes.length} runs; best by val loss: ${result.best ?? "none"}`);
    console.log(`wrote ${files.join(", ")}`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  // Fixed flags go to every run; lists become the axes of the grid.
  const fixed: string[] = [];
  const axes: { flag: string; values: string[] }[] = [];
  for (const [name, value] of Object.entries(raw)) {
    const f = trainFlags[name];
    if (!f || NOT_SWEPT.has(name) || value === undefined || value === false) continue;
    if (f.kind === "bool") {
      fixed.push(`--${name}`);
      continue;
    }
    const values = String(value).split(",").map((v) => v.trim());
    for (const v of values) {
      if (v === "") throw new UsageError(`--${name}: an empty value in '${value}'`);
      parseValue(name, f, v);
    }
    if (new Set(values).size !== values.length) {
      throw new UsageError(`--${name}: a value appears twice in '${value}'`);
    }
    if (values.length === 1) fixed.push(`--${name}=${values[0]}`);
    else axes.push({ flag: name, values });
  }
  const specs: RunSpec[] = [];
  const train = defineCommand({ summary: "", usage: "", groups: TRAIN_FLAGS });
  for (const point of grid(axes)) {
    const args = [...fixed, ...Object.entries(point).map(([k, v]) => `--${k}=${v}`)];
    // Every run's flags are checked as `deno task train` would, before any run starts.
    const opts = await resolveOptions(train.parse(args).values as TrainValues);
    const name = slug(point);
    specs.push({ name, dir: `${out}/runs/${name}`, args, steps: opts.train.steps });
  }
  if (raw["print-commands"]) {
    for (const s of specs) {
      console.log(["deno", "task", "train", ...trainArgs(s, false)].map(quote).join(" "));
    }
    return 0;
  }
  await Deno.mkdir(`${out}/runs`, { recursive: true });
  console.log(`${specs.length} runs in ${out}/runs, ${raw.jobs} at a time`);
  const { outcomes, interrupted } = await runInTerminal(specs, raw.jobs as number);
  const result = summarize(axes.map((a) => a.flag), outcomes);
  const files = await writeSweep(
    out,
    result,
    `Sweep: ${axes.map((a) => `--${a.flag} ${a.values.join(",")}`).join(" ")}`,
  );
  const failed = outcomes.filter((o) => o.status === "failed");
  const best = result.rows.find((r) => r.name === result.best);
  console.log(
    `best by val loss: ${best ? `${best.name} (val ${best.val!.toFixed(4)})` : "none finished"}`,
  );
  console.log(`wrote ${files.join(", ")}`);
  if (interrupted) return 130;
  return failed.length ? 1 : 0;
}

if (import.meta.main) {
  runCommand(
    command,
    (values, positionals) => main(values as Record<string, unknown>, positionals),
  );
}
