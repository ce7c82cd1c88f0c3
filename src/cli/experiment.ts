/** `deno task experiment NAME`: the studies of makemore part 3, side by side; see --help. */

import { STUDIES, studySpecs, writeStudy } from "../experiments.ts";
import {
  BATCH_FLAGS,
  outputDir,
  replicasOf,
  resolveSpec,
  runCommand,
  runInTerminal,
} from "./common.ts";
import { defineCommand, UsageError, type Values } from "./flags.ts";
import { DEFAULT_DATA } from "./train_options.ts";

const command = defineCommand({
  summary: "Run one of makemore part 3's studies: a few short runs, compared in one report.",
  usage: `deno task experiment NAME [options]   (NAME: ${Object.keys(STUDIES).join(", ")})`,
  positionals: true,
  groups: {
    Options: {
      out: {
        kind: "string",
        arg: "DIR",
        help: "where the runs and the report go",
        shown: "experiments/NAME",
      },
      data: {
        kind: "string",
        arg: "FILE",
        help: "the data, the same for every run",
        default: DEFAULT_DATA,
      },
      seed: {
        kind: "int",
        arg: "N",
        min: 0,
        max: 0xffffffff,
        help: "the seed of every run",
        default: 42,
      },
      ...BATCH_FLAGS,
      redo: {
        kind: "bool",
        help: "train again the runs whose directory holds a run of other settings (else the " +
          "study refuses to start)",
      },
      "skip-failed": {
        kind: "bool",
        help: "leave the runs that failed before as failed (else they are tried again)",
      },
      steps: {
        kind: "int",
        arg: "N",
        min: 1,
        help: "train each run this many steps instead of the study's (a quick look)",
      },
    },
  },
  notes: Object.entries(STUDIES).map(([n, s]) => `${n}: ${s.title}.`).join("\n") +
    "\nA study run again reuses the runs it finished, and resumes those it was stopped in " +
    "(Ctrl-C, SIGTERM, SIGHUP), when they are the runs asked for; a run of other settings " +
    "(another --steps, say) is refused, naming the flag, unless --redo.",
});

async function main(values: Values<typeof command.groups>, positionals: string[]): Promise<number> {
  const [name, ...rest] = positionals;
  if (!name) throw new UsageError(`which study? one of ${Object.keys(STUDIES).join(", ")}`);
  if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const study = STUDIES[name];
  if (!study) {
    throw new UsageError(`no study '${name}': one of ${Object.keys(STUDIES).join(", ")}`);
  }
  const dir = values.out ?? `experiments/${name}`;
  if (dir === "") throw new UsageError("--out: no directory given");
  const steps = values.steps ?? study.steps;
  const specs = await Promise.all(
    studySpecs({ ...study, steps }, dir, [`--data=${values.data}`, `--seed=${values.seed}`])
      .map((s) => resolveSpec(s.name, s.dir, s.args)),
  );
  await outputDir(dir);
  console.log(`${study.title}: ${specs.length} runs of ${steps} steps in ${dir}/runs`);
  const { outcomes, stoppedBy } = await runInTerminal(dir, specs, {
    jobs: values.jobs,
    replicas: replicasOf(values.replicas),
    redo: values.redo,
    skipFailed: values["skip-failed"],
  });
  const written = await writeStudy(name, { ...study, steps }, dir, outcomes);
  console.log(`wrote ${written.map((f) => `${dir}/${f}`).join(", ")}`);
  if (stoppedBy !== null) return stoppedBy;
  return outcomes.some((o) => o.status === "failed") ? 1 : 0;
}

if (import.meta.main) runCommand(command, main);
