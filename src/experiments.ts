/**
 * The studies of makemore part 3, from the command line (`deno task experiment NAME`): a few
 * short runs on the same data and seed, side by side in one report.
 *
 * - init: a deep network without BatchNorm, its hidden weights drawn with Kaiming gains 0.5, 1,
 *   5/3 and 3, and from N(0, 1): how the tanh activations saturate or shrink layer by layer,
 *   and the gradients with them, at the first step and at step 1000.
 * - batchnorm: the same network from three initializations, with and without BatchNorm.
 * - lr: the update-to-data ratios over training, for learning rates from 0.01 to 1 ("if the
 *   updates are small (below 1e-3) increase the learning rate, and vice versa").
 *
 * The network is the lecture's deep one: context 3, embeddings of 10, 5 hidden layers of 100.
 */

import type { RunOutcome } from "./batch_runs.ts";
import type { Diagnostics, SnapshotSummary } from "./diagnostics.ts";
import { writeFileAtomic } from "./files.ts";
import { lines, type Panel, panels } from "./figures.ts";
import { escapeHtml, htmlPage, htmlTable, writeFigures } from "./plots.ts";
import { readDiagnostics, readLog } from "./run_dir.ts";
import { LECTURE_STEP, type LogEntry } from "./training.ts";
import type { TopLevelSpec } from "vega-lite";

/** The lecture's deep network, and a quiet run: no samples, no figures of its own. */
const DEEP = ["--layers=5", "--hidden=100", "--embd=10", "--block-size=3", "--samples=0"];
/** Without BatchNorm, the last layer starts small (the lecture's `weight *= 0.1`: std 0.01). */
const NO_BN = ["--no-batchnorm", "--output-scale=0.01"];

export interface StudyRun {
  readonly name: string;
  /** What the run varies, for tables and legends. */
  readonly label: string;
  readonly args: readonly string[];
}

export interface Study {
  readonly title: string;
  /** A paragraph: what the study shows and what to look for. */
  readonly about: string;
  readonly steps: number;
  readonly runs: readonly StudyRun[];
}

export const STUDIES: Readonly<Record<string, Study>> = {
  init: {
    title: "Initialization: activations and gradients through a deep network without BatchNorm",
    about: "Five hidden layers of 100 tanh units, no BatchNorm, the hidden weights drawn as " +
      "N(0, 1) * gain / sqrt(fan_in) (Kaiming) with gains 0.5, 1, 5/3 and 3, or as N(0, 1) " +
      "(unit). Too small a gain and the activations shrink layer after layer, and the " +
      "gradients with them; too large, or unit, and the tanh units saturate (|t| > 0.97: their " +
      "gradient is under 6% of its peak). 5/3 keeps every layer alike: what makemore part 3 " +
      "shows before it brings in BatchNorm.",
    steps: 1000,
    runs: [
      ...[["0.5", "0.5"], ["1", "1"], ["5/3", String(5 / 3)], ["3", "3"]].map(([label, g]) => ({
        name: `gain-${label.replace("/", "_")}`,
        label: `gain ${label}`,
        args: [...DEEP, ...NO_BN, `--gain=${g}`],
      })),
      { name: "unit", label: "unit (N(0,1))", args: [...DEEP, ...NO_BN, "--init=unit"] },
    ],
  },
  batchnorm: {
    title: "BatchNorm: the same deep network with and without it, from three initializations",
    about: "Five hidden layers of 100, the hidden weights drawn with Kaiming gain 5/3, gain 0.5 " +
      "(too small) or N(0, 1) (far too large), each with BatchNorm after every Linear (and on " +
      "the output, gamma 0.1) or without (Linear with bias, the output weights at std 0.01). " +
      "BatchNorm undoes the scale of the weights in the forward pass: with it, all three start " +
      "with the same activations, where without it they shrink or saturate. The scale still " +
      "shows in the backward pass: large weights get small gradients (a low update-to-data " +
      "ratio, so they learn slowly), small weights large ones.",
    steps: 5000,
    runs: [["gain 5/3", `--gain=${5 / 3}`], ["gain 0.5", "--gain=0.5"], ["unit", "--init=unit"]]
      .flatMap(([label, init]) => [
        {
          name: `with-${label.replace(/[ /]/g, "_")}`,
          label: `${label}, BatchNorm`,
          args: [...DEEP, init, "--eval-every=1000"],
        },
        {
          name: `without-${label.replace(/[ /]/g, "_")}`,
          label: `${label}, no BatchNorm`,
          args: [...DEEP, ...NO_BN, init, "--eval-every=1000"],
        },
      ]),
  },
  lr: {
    title: "Learning rate: the update-to-data ratios over training",
    about: "The same network with BatchNorm, at learning rates from 0.01 to 1. The " +
      "update-to-data ratio, log10(std(lr * grad) / std(weight)), says how fast each weight " +
      "changes relative to its size; makemore part 3 aims for about 1e-3 (-3 here): if the " +
      "updates are below it, increase the learning rate, and vice versa.",
    steps: 2000,
    runs: ["0.01", "0.03", "0.1", "0.3", "1"].map((lr) => ({
      name: `lr-${lr}`,
      label: `lr ${lr}`,
      args: [...DEEP, `--lr=${lr}`, "--eval-every=0"],
    })),
  },
};

/** The runs of a study, in DIR/runs/NAME, with their train flags, on the data and seed given. */
export function studySpecs(
  study: Study,
  dir: string,
  common: readonly string[],
): { name: string; dir: string; args: string[] }[] {
  return study.runs.map((r) => ({
    name: r.name,
    dir: `${dir}/runs/${r.name}`,
    args: [...r.args, ...common, `--steps=${study.steps}`],
  }));
}

interface RunData {
  readonly run: StudyRun;
  readonly outcome: RunOutcome;
  readonly log: LogEntry[];
  readonly diag: Diagnostics | null;
}

const snapshotAt = (d: RunData, step: number) => d.diag?.snapshots.find((s) => s.step === step);
const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

/** One panel per run: the histograms of `pick` (activations or gradients) per layer. */
function perRun(
  data: readonly RunData[],
  step: number,
  pick: (s: SnapshotSummary) => Panel["series"],
): Panel[] {
  return data.flatMap((d) => {
    const s = snapshotAt(d, step);
    return s ? [{ title: `${d.run.label}, step ${step}`, series: pick(s) }] : [];
  });
}

const activations = (s: SnapshotSummary) =>
  s.activations.map((a) => ({
    label: `layer ${a.layer}: std ${a.std.toFixed(2)}, saturated ${percent(a.saturated)}`,
    d: a,
  }));
const gradients = (s: SnapshotSummary) =>
  s.gradients.map((g) => ({ label: `layer ${g.layer}: std ${g.std.toExponential(1)}`, d: g }));

/** The training loss every `logEvery` steps, averaged over 10 lines for legibility. */
function lossCurve(log: readonly LogEntry[]): { x: number; y: number }[] {
  const train = log.flatMap((e) => "loss" in e ? [e] : []);
  const out: { x: number; y: number }[] = [];
  for (let i = 0; i < train.length; i += 10) {
    const part = train.slice(i, i + 10);
    out.push({ x: part.at(-1)!.step, y: part.reduce((a, e) => a + e.loss, 0) / part.length });
  }
  return out;
}

/** The median over the weights of the update-to-data ratio, at every step it was taken. */
function medianRatio(diag: Diagnostics | null): { x: number; y: number }[] {
  if (!diag) return [];
  return diag.updateRatios.steps.map((step, i) => ({
    x: step,
    y: median(diag.updateRatios.tensors.map((t) => t.log10[i])),
  }));
}

function figures(name: string, data: readonly RunData[], steps: number): Map<string, TopLevelSpec> {
  const f = new Map<string, TopLevelSpec>();
  const both = [1, Math.min(LECTURE_STEP, steps)];
  if (name !== "lr") {
    for (const step of both) {
      f.set(
        `activations-${step}`,
        panels(`tanh activations at step ${step}`, "tanh output", perRun(data, step, activations)),
      );
      f.set(
        `gradients-${step}`,
        panels(
          `Gradients into each tanh at step ${step}`,
          "gradient",
          perRun(data, step, gradients),
        ),
      );
    }
  }
  if (name !== "init") {
    f.set(
      "loss",
      lines(
        "Training loss (mean of 1000 steps)",
        { x: "step", y: "loss" },
        data.map((d) => ({ label: d.run.label, points: lossCurve(d.log) })),
      ),
    );
  }
  f.set(
    "update-ratio",
    lines(
      "Update-to-data ratio: the median over the weights of log10(std(lr * grad) / std(weight))",
      { x: "step", y: "log10 ratio", guideY: -3 },
      data.map((d) => ({ label: d.run.label, points: medianRatio(d.diag) })),
    ),
  );
  return f;
}

function table(name: string, data: readonly RunData[], steps: number): string {
  const late = Math.min(LECTURE_STEP, steps);
  const layers = (s: SnapshotSummary | undefined, f: (s: SnapshotSummary) => string[]) =>
    s ? f(s).join(" / ") : "";
  const rows = data.map((d) => {
    const first = snapshotAt(d, 1);
    const then = snapshotAt(d, late);
    const losses = (d.outcome.report?.losses ?? {}) as Record<string, number | null>;
    const ratio = medianRatio(d.diag).at(-1)?.y;
    const cells: (string | number)[] = [
      d.run.label,
      d.outcome.status === "failed" ? `failed: ${d.outcome.error}` : d.outcome.status,
      typeof losses.train === "number" ? Number(losses.train.toFixed(4)) : "",
      typeof losses.val === "number" ? Number(losses.val.toFixed(4)) : "",
      ratio !== undefined && Number.isFinite(ratio) ? Number(ratio.toFixed(2)) : "",
    ];
    if (name !== "lr") {
      cells.push(
        layers(first, (s) => s.activations.map((a) => percent(a.saturated))),
        layers(then, (s) => s.activations.map((a) => percent(a.saturated))),
        layers(first, (s) => s.activations.map((a) => a.std.toFixed(2))),
        layers(first, (s) => s.gradients.map((g) => g.std.toExponential(1))),
      );
    }
    return cells;
  });
  const headers = ["run", "status", "train loss", "val loss", "update ratio (log10, end)"];
  if (name !== "lr") {
    headers.push(
      "saturated, step 1 (layer 0 / 1 / ...)",
      `saturated, step ${late}`,
      "activation std, step 1",
      "gradient std, step 1",
    );
  }
  return htmlTable(headers, rows);
}

/** Reads the runs' files and writes the study's report.html and figures into `dir`. */
export async function writeStudy(
  name: string,
  study: Study,
  dir: string,
  outcomes: readonly RunOutcome[],
): Promise<string[]> {
  const data: RunData[] = [];
  for (const [i, outcome] of outcomes.entries()) {
    data.push({
      run: study.runs[i],
      outcome,
      log: await readLog(outcome.spec.dir),
      diag: await readDiagnostics(outcome.spec.dir),
    });
  }
  const specs = figures(name, data, study.steps);
  const svgs = await writeFigures(dir, specs);
  const flags = outcomes.map((o, i) => `${study.runs[i].label}: ${o.spec.args.join(" ")}`);
  const body = `<p>${study.about}</p>
${table(name, data, study.steps)}
<p>Each run is <code>deno task train</code> with these flags; its files are in
<code>runs/NAME/</code>:</p>
<ul>${flags.map((f) => `<li><code>${escapeHtml(f)}</code></li>`).join("")}</ul>`;
  await writeFileAtomic(`${dir}/report.html`, htmlPage(study.title, body, svgs));
  return [...svgs.keys()].flatMap((k) => [`${k}.png`, `${k}.svg`]).concat("report.html");
}
