/** `deno task sweep`: a grid of training runs over comma-separated flag values; see --help. */

import { type RunSpec, slug, trainArgs } from "../batch_runs.ts";
import { UserError } from "../errors.ts";
import { exists } from "../files.ts";
import { collect, grid, summarize, writeSweep } from "../sweep.ts";
import {
  BATCH_FLAGS,
  outputDir,
  replicasOf,
  resolveSpec,
  runCommand,
  runInTerminal,
} from "./common.ts";
import { defineCommand, type Flag, type FlagGroups, parseValue, UsageError } from "./flags.ts";
import { TRAIN_FLAGS } from "./train_options.ts";

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
    ...BATCH_FLAGS,
    "print-commands": {
      kind: "bool",
      help: "print one shell command per run (for GNU parallel or a cluster) and stop",
    },
    collect: {
      kind: "bool",
      help: "merge the runs of the sweep directories given as arguments into --out's report",
    },
    redo: {
      kind: "bool",
      help: "train again the runs whose directory holds a run of other settings (else the " +
        "sweep refuses to start)",
    },
    "skip-failed": {
      kind: "bool",
      help: "leave the runs that failed before as failed (else they are tried again)",
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
Each run goes to DIR/runs/NAME (NAME from its values, e.g. lr=0.1,hidden=200). Run again, the
sweep skips a finished run and resumes an interrupted one only when it is the run asked for (every
flag and the data the same); otherwise it refuses, naming the flag, unless --redo. A failed run is
tried again (--skip-failed leaves it). Ctrl-C, SIGTERM or SIGHUP stop every run with a checkpoint.
DIR gets sweep.json, sweep.csv, report.html and a figure of val loss against each swept flag.`,
});

const trainFlags: Record<string, Flag> = Object.assign({}, ...Object.values(TRAIN_FLAGS));

/** Shell quoting for --print-commands. */
const quote = (s: string) => /^[\w.,=\/:+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;

async function main(raw: Record<string, unknown>, positionals: string[]): Promise<number> {
  const out = raw.out as string;
  if (out === "") throw new UsageError("--out: no directory given");
  if (raw.collect) {
    if (positionals.length === 0) throw new UsageError("--collect needs sweep directories");
    if (await exists(`${out}/runs`)) {
      throw new UserError(
        `--out ${out} holds a sweep of its own, whose report this would replace: write the ` +
          "merged report elsewhere",
      );
    }
    const outcomes = await collect(positionals);
    if (outcomes.length === 0) throw new UserError(`no runs in ${positionals.join(", ")}/runs/`);
    const params = [...new Set(outcomes.flatMap((o) => Object.keys(o.spec.values)))];
    await outputDir(out);
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
    const seen = new Map<string, string>();
    for (const v of values) {
      if (v === "") throw new UsageError(`--${name}: an empty value in '${value}'`);
      // The same value written twice ("0.1,0.10", "5/3,1.6666666666666667") is one run.
      const key = String(parseValue(name, f, v));
      if (seen.has(key)) {
        throw new UsageError(`--${name}: ${seen.get(key)} and ${v} are the same value`);
      }
      seen.set(key, v);
    }
    if (values.length === 1) fixed.push(`--${name}=${values[0]}`);
    else axes.push({ flag: name, values });
  }
  const specs: RunSpec[] = [];
  for (const point of grid(axes)) {
    const args = [...fixed, ...Object.entries(point).map(([k, v]) => `--${k}=${v}`)];
    const name = slug(point);
    specs.push(await resolveSpec(name, `${out}/runs/${name}`, args, point));
  }
  const names = new Set(specs.map((s) => s.name));
  if (names.size !== specs.length) {
    throw new UsageError(
      "two runs of this grid would share a directory name: rename a --data file",
    );
  }
  if (raw["print-commands"]) {
    for (const s of specs) {
      console.log(["deno", "task", "train", ...trainArgs(s, "train")].map(quote).join(" "));
    }
    return 0;
  }
  await outputDir(out);
  console.log(
    `${specs.length} runs in ${out}/runs; runs of one shape in groups of ` +
      `${raw.replicas === "auto" ? "as many as fit" : `up to ${raw.replicas}`}, ${raw.jobs} ` +
      "at a time",
  );
  const { outcomes, stoppedBy } = await runInTerminal(`${out}`, specs, {
    jobs: raw.jobs as number,
    replicas: replicasOf(raw.replicas as string),
    redo: raw.redo as boolean,
    skipFailed: raw["skip-failed"] as boolean,
  });
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
  if (stoppedBy !== null) return stoppedBy;
  return failed.length ? 1 : 0;
}

if (import.meta.main) {
  runCommand(
    command,
    (values, positionals) => main(values as Record<string, unknown>, positionals),
  );
}
