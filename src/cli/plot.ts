/** `deno task plot`: redraws a run's figures and report from its files; see --help. */

import { plotRun } from "../plots.ts";
import { runCommand } from "./common.ts";
import { defineCommand, type Values } from "./flags.ts";

const command = defineCommand({
  summary: "Draw the figures and report.html of a training run from the files it wrote " +
    "(log.jsonl, diagnostics.json, run.json), without training.",
  usage: "deno task plot [options]",
  groups: {
    Options: { out: { kind: "string", arg: "DIR", help: "the run directory", default: "out" } },
  },
});

async function main(values: Values<typeof command.groups>): Promise<void> {
  const written = await plotRun(values.out);
  console.log(`wrote ${written.map((f) => `${values.out}/${f}`).join(", ")}`);
}

if (import.meta.main) runCommand(command, main);
