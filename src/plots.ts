/**
 * The figures of a run and its report, drawn from the files the run wrote (run.json,
 * log.jsonl, diagnostics.json), so that `deno task plot` can redraw them at any time.
 *
 * Charts are Vega-Lite specifications, rendered headlessly by Vega to SVG, and rasterized to
 * PNG by resvg (WebAssembly) with the DejaVu Sans font: all from the npm registry, nothing at
 * run time from the network, no native code.
 */

import { createRequire } from "node:module";
import { initWasm, Resvg } from "@resvg/resvg-wasm";
import * as vega from "vega";
import type { TopLevelSpec } from "vega-lite";
import { compile } from "vega-lite";
import "dejavu-fonts-ttf/package.json" with { type: "json" };
import type { Diagnostics, Distribution, SnapshotSummary } from "./diagnostics.ts";
import { UserError } from "./errors.ts";
import { writeFileAtomic } from "./files.ts";
import { DIAGNOSTICS_FILE, LECTURE_STEP, LOG_FILE, RUN_FILE } from "./train.ts";

const FONT = "DejaVu Sans";
const WIDTH = 640;

/** One line of log.jsonl. */
interface LogEntry {
  step: number;
  loss?: number;
  lr?: number;
  val?: number;
}

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
const sci = (x: number) => x.toExponential(1);
const signed = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(2);

/** The curve of a histogram as density (integrates to 1), at bin centers. */
function curve(d: Distribution, series: string, panel: string) {
  const { lo, hi, counts } = d.histogram;
  const width = (hi - lo) / counts.length;
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  return counts.map((c, i) => ({
    x: lo + (i + 0.5) * width,
    density: c / total / width,
    series,
    panel,
  }));
}

const panelTitle = (s: SnapshotSummary, last: number) =>
  s.step === 1
    ? "step 1 (initialization)"
    : `step ${s.step}${
      s.step === last ? " (end)" : s.step === LECTURE_STEP ? " (where makemore part 3 looks)" : ""
    }`;

/** Density curves, one panel per snapshot, one colored line per series with its own legend. */
function distributions(
  title: string,
  xTitle: string,
  snapshots: SnapshotSummary[],
  series: (s: SnapshotSummary) => { label: string; d: Distribution }[],
): TopLevelSpec {
  const last = snapshots.at(-1)?.step ?? 0;
  return {
    title: { text: title, fontSize: 16 },
    vconcat: snapshots.map((s) => ({
      title: panelTitle(s, last),
      width: WIDTH,
      height: 200,
      data: { values: series(s).flatMap(({ label, d }) => curve(d, label, panelTitle(s, last))) },
      mark: { type: "line", interpolate: "monotone" },
      encoding: {
        x: { field: "x", type: "quantitative", title: xTitle, axis: { format: "~g" } },
        y: { field: "density", type: "quantitative", title: "density" },
        color: {
          field: "series",
          type: "nominal",
          title: null,
          sort: null,
          legend: { labelLimit: 2000, orient: "bottom", columns: 1, labelFontSize: 12 },
        },
      },
    })),
    resolve: { scale: { color: "independent", x: "independent", y: "independent" } },
  };
}

function lossChart(log: LogEntry[]): TopLevelSpec {
  const train = log.filter((e) => e.loss !== undefined);
  const steps = train.at(-1)?.step ?? 0;
  // As the lecture: the mean of each bucket of 1000 steps (of fewer, for short runs).
  const bucket = steps >= 20_000 ? 1000 : 100;
  const buckets = new Map<number, { sum: number; n: number }>();
  let prev = 0;
  for (const e of train) {
    const b = Math.ceil(e.step / bucket) * bucket;
    const got = buckets.get(b) ?? { sum: 0, n: 0 };
    got.sum += e.loss! * (e.step - prev);
    got.n += e.step - prev;
    buckets.set(b, got);
    prev = e.step;
  }
  const values = [
    ...[...buckets].map(([step, { sum, n }]) => ({
      step,
      loss: sum / n,
      split: `train (mean of ${bucket} steps)`,
    })),
    ...log.filter((e) => e.val !== undefined).map((e) => ({
      step: e.step,
      loss: e.val!,
      split: "val",
    })),
  ];
  const losses = values.map((v) => v.loss);
  const domain = [Math.min(...losses) * 0.97, Math.max(...losses) * 1.03];
  return {
    title: { text: "Loss", fontSize: 16 },
    width: WIDTH,
    height: 300,
    data: { values },
    mark: { type: "line", point: { size: 20 } },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step" },
      y: {
        field: "loss",
        type: "quantitative",
        title: "cross-entropy loss (log scale)",
        scale: { type: "log", domain, nice: false },
        axis: { format: ".2f", tickCount: 8 },
      },
      color: {
        field: "split",
        type: "nominal",
        title: null,
        legend: { orient: "top-right", labelLimit: 300 },
      },
    },
  };
}

function ratioChart(d: Diagnostics): TopLevelSpec {
  const { steps, tensors } = d.updateRatios;
  const values = tensors.flatMap((t) =>
    t.log10.map((y, i) => ({ step: steps[i], y, name: t.name }))
  );
  return {
    title: { text: "Update-to-data ratio: log10(std(lr * grad) / std(weight))", fontSize: 16 },
    width: WIDTH,
    height: 300,
    layer: [
      {
        data: { values },
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: {
          x: { field: "step", type: "quantitative", title: "step" },
          y: { field: "y", type: "quantitative", title: "log10 ratio" },
          color: {
            field: "name",
            type: "nominal",
            title: null,
            sort: null,
            legend: { labelLimit: 300 },
          },
        },
      },
      {
        data: { values: [{ y: -3, label: "1e-3" }] },
        mark: { type: "rule", strokeDash: [6, 4], color: "black" },
        encoding: { y: { field: "y", type: "quantitative" } },
      },
      {
        data: { values: [{ y: -3, label: "guide: 1e-3" }] },
        mark: { type: "text", align: "right", dy: -6, x: WIDTH - 4 },
        encoding: { y: { field: "y", type: "quantitative" }, text: { field: "label" } },
      },
    ],
  };
}

/** The figures of a run, as Vega-Lite specifications by file name (without extension). */
export function figureSpecs(log: LogEntry[], diag: Diagnostics | null): Map<string, TopLevelSpec> {
  const figures = new Map<string, TopLevelSpec>([["loss", lossChart(log)]]);
  if (!diag || diag.snapshots.length === 0) return figures;
  // The first snapshot, the one at step 1000 (where the lecture draws these), and the last:
  // more would crowd the page (diagnostics.json has them all).
  const all = diag.snapshots;
  const shown = all.filter((s, i) => i === 0 || s.step === LECTURE_STEP || i === all.length - 1);
  figures.set(
    "activations",
    distributions(
      "Activations & saturation: tanh outputs",
      "tanh output",
      shown,
      (s) =>
        s.activations.map((a) => ({
          label: `layer ${a.layer} (mean ${signed(a.mean)}, std ${a.std.toFixed(2)}, saturated ${
            percent(a.saturated)
          })`,
          d: a,
        })),
    ),
  );
  figures.set(
    "gradients",
    distributions(
      "Gradients flowing into each tanh output",
      "gradient",
      shown,
      (s) =>
        s.gradients.map((g) => ({
          label: `layer ${g.layer} (mean ${sci(g.mean)}, std ${sci(g.std)})`,
          d: g,
        })),
    ),
  );
  figures.set(
    "weight-gradients",
    distributions("Weight gradients", "gradient", shown, (s) =>
      s.weights.map((w) => ({
        label: `${w.name} ${w.shape.join("x")} (std ${sci(w.std)}, grad:data ratio ${
          sci(w.ratio)
        })`,
        d: w,
      }))),
  );
  if (diag.updateRatios.steps.length) figures.set("update-ratio", ratioChart(diag));
  return figures;
}

let wasmReady: Promise<void> | undefined;
let font: Uint8Array | undefined;

/** resvg's WebAssembly and the font, from the npm packages in Deno's cache. */
async function rasterizer(): Promise<Uint8Array> {
  const require = createRequire(import.meta.url);
  wasmReady ??= Deno.readFile(require.resolve("@resvg/resvg-wasm/index_bg.wasm")).then(initWasm);
  await wasmReady;
  font ??= await Deno.readFile(require.resolve("dejavu-fonts-ttf/ttf/DejaVuSans.ttf"));
  return font;
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const full = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    padding: 12,
    config: { font: FONT, axis: { labelFontSize: 11, titleFontSize: 12 } },
    ...spec,
  } as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(full).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/** PNG of an SVG, scaled by `zoom` (2: sharp on high-density screens). */
export async function svgToPng(svg: string, zoom = 2): Promise<Uint8Array> {
  const fontBuffer = await rasterizer();
  const png = new Resvg(svg, {
    font: { fontBuffers: [fontBuffer], defaultFontFamily: FONT, loadSystemFonts: false },
    fitTo: { mode: "zoom", value: zoom },
  }).render();
  const bytes = png.asPng();
  png.free();
  return bytes;
}

interface RunReport {
  config: Record<string, unknown>;
  train: Record<string, unknown>;
  seed: number;
  data: { path: string; words: number; vocab: string; examples: Record<string, number> };
  params: number;
  backend: string;
  adapter: string;
  steps: number;
  train_seconds: number;
  us_per_step: number;
  calibrated: boolean;
  losses: { train: number; val: number; test: number };
  samples: { name: string; inTrain: boolean }[];
  finished: string;
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new UserError(`${path}: cannot read it (${(e as Error).message.split("\n")[0]})`);
  }
}

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

function reportHtml(run: RunReport | null, svgs: Map<string, string>): string {
  const rows = (o: Record<string, unknown>) =>
    Object.entries(o).map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(String(v))}</td></tr>`)
      .join("");
  const summary = run
    ? `<h2>Result</h2>
<table>${
      rows({
        "train loss": run.losses.train.toFixed(4),
        "val loss": run.losses.val.toFixed(4),
        "test loss": run.losses.test.toFixed(4),
        "steps": run.steps,
        "training time": `${run.train_seconds.toFixed(1)} s (${
          run.us_per_step.toFixed(0)
        } us/step)`,
        "backend": `${run.backend}: ${run.adapter}`,
        "BatchNorm statistics": run.calibrated
          ? "recalibrated over the training split"
          : "running averages",
        "finished": run.finished,
      })
    }</table>
<h2>Samples</h2>
<ul class="samples">${
      run.samples.map((s) =>
        `<li>${escape(s.name)} <span>${s.inTrain ? "in the training set" : "new"}</span></li>`
      ).join("")
    }</ul>
<h2>Configuration</h2>
<table>${
      rows({
        ...run.config,
        ...run.train,
        seed: run.seed,
        parameters: run.params,
        data: `${run.data.path} (${run.data.words} words, vocabulary ${run.data.vocab.length})`,
      })
    }</table>`
    : "<p>(run.json not found: the run has not finished)</p>";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>makemore-webgpu run</title>
<style>
body { font-family: "DejaVu Sans", system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 12px 2px 0; }
th { font-weight: normal; color: #666; } .samples span { color: #888; font-size: 0.85em; }
figure { margin: 2em 0; } svg { max-width: 100%; height: auto; }
</style></head><body>
<h1>makemore-webgpu run</h1>
${summary}
<h2>Figures</h2>
${[...svgs].map(([name, svg]) => `<figure id="${name}">${svg}</figure>`).join("\n")}
</body></html>
`;
}

/** Draws every figure of the run in `dir` (SVG and PNG) and its report.html. */
export async function plotRun(dir: string): Promise<string[]> {
  const logText = await Deno.readTextFile(`${dir}/${LOG_FILE}`).catch(() => {
    throw new UserError(`${dir}/${LOG_FILE}: no training log to plot (is ${dir} a run directory?)`);
  });
  const log: LogEntry[] = logText.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const diag = await readJson<Diagnostics>(`${dir}/${DIAGNOSTICS_FILE}`);
  const run = await readJson<RunReport>(`${dir}/${RUN_FILE}`);
  const written: string[] = [];
  const svgs = new Map<string, string>();
  for (const [name, spec] of figureSpecs(log, diag)) {
    const svg = await renderSvg(spec);
    svgs.set(name, svg);
    await writeFileAtomic(`${dir}/${name}.svg`, svg);
    await writeFileAtomic(`${dir}/${name}.png`, await svgToPng(svg));
    written.push(`${name}.png`, `${name}.svg`);
  }
  await writeFileAtomic(`${dir}/report.html`, reportHtml(run, svgs));
  written.push("report.html");
  return written;
}
