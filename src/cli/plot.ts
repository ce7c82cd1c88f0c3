/** `deno task plot`: redraws a run's figures and report from its files; see --help. */

import { plotRun } from "../plots.ts";
import { parseFlags, runMain } from "./common.ts";

const HELP = `Draw the figures and report.html of a training run from the files it wrote
(log.jsonl, diagnostics.json, run.json), without training.

Usage: deno task plot [options]

Options:
  --out DIR     the run directory (default out/)
  -h, --help    show this help
`;

async function main(): Promise<void> {
  const { values } = parseFlags(Deno.args, {
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const dir = values.out ?? "out";
  const written = await plotRun(dir);
  console.log(`wrote ${written.map((f) => `${dir}/${f}`).join(", ")}`);
}

if (import.meta.main) runMain(main);
