/**
 * The figures of a run, as Vega-Lite specifications: the loss curves, the tanh activations and
 * their saturation, the gradients into each tanh, the weight gradients with their grad:data
 * ratios, and the update-to-data ratios over training, as makemore part 3 draws them. Pure data
 * in, specifications out: the command line renders them to SVG and PNG (src/plots.ts), the lab
 * page renders the same specifications live.
 */

import * as vega from "vega";
import type { TopLevelSpec } from "vega-lite";
import { compile } from "vega-lite";
import type { Diagnostics, Distribution, SnapshotSummary } from "./diagnostics.ts";
import { LECTURE_STEP, type LogEntry } from "./training.ts";

export const FONT = "DejaVu Sans";
const WIDTH = 640;

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

/** One panel of density curves: a title, and a colored line per series. */
export interface Panel {
  readonly title: string;
  readonly series: readonly { readonly label: string; readonly d: Distribution }[];
}

/** Density curves, one panel above the other, each with its own legend. */
export function panels(title: string, xTitle: string, list: readonly Panel[]): TopLevelSpec {
  return {
    title: { text: title, fontSize: 16 },
    vconcat: list.map((p) => ({
      title: p.title,
      width: WIDTH,
      height: 200,
      data: { values: p.series.flatMap(({ label, d }) => curve(d, label, p.title)) },
      mark: { type: "line", interpolate: "monotone" },
      encoding: {
        // At most ~8 labels: gradients read 0.002, 0.004... and run together beyond that.
        x: {
          field: "x",
          type: "quantitative",
          title: xTitle,
          axis: { format: "~g", tickCount: 8, labelOverlap: "greedy" },
        },
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

/** Density curves, one panel per snapshot, one colored line per series. */
function distributions(
  title: string,
  xTitle: string,
  snapshots: SnapshotSummary[],
  series: (s: SnapshotSummary) => { label: string; d: Distribution }[],
): TopLevelSpec {
  const last = snapshots.at(-1)?.step ?? 0;
  return panels(
    title,
    xTitle,
    snapshots.map((s) => ({ title: panelTitle(s, last), series: series(s) })),
  );
}

/** The curves of several series on one chart: y against x, a colored line per series. */
export function lines(
  title: string,
  axes: { x: string; y: string; logX?: boolean; logY?: boolean; guideY?: number },
  series: readonly {
    readonly label: string;
    readonly points: readonly { x: number; y: number }[];
    /** Its colour (else the palette's next). */
    readonly colour?: string;
  }[],
): TopLevelSpec {
  const coloured = series.every((s) => s.colour !== undefined);
  const values = series.flatMap((s) =>
    s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).map((p) => ({
      ...p,
      series: s.label,
    }))
  );
  const layer: TopLevelSpec[] = [{
    data: { values },
    mark: { type: "line", strokeWidth: 1.5 },
    encoding: {
      x: {
        field: "x",
        type: "quantitative",
        title: axes.x,
        scale: axes.logX ? { type: "log" } : { zero: false },
        // Steps read best as 500, 1k, 20k; learning rates as 0.001, 0.01.
        axis: { format: axes.logX ? "~g" : "~s" },
      },
      y: {
        field: "y",
        type: "quantitative",
        title: axes.y,
        scale: axes.logY ? { type: "log" } : { zero: false },
      },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        sort: null,
        legend: { labelLimit: 400 },
        ...(coloured
          ? { scale: { domain: series.map((s) => s.label), range: series.map((s) => s.colour) } }
          : {}),
      },
    },
  } as TopLevelSpec];
  if (axes.guideY !== undefined) {
    layer.push({
      data: { values: [{ y: axes.guideY }] },
      mark: { type: "rule", strokeDash: [6, 4], color: "black" },
      encoding: { y: { field: "y", type: "quantitative" } },
    } as TopLevelSpec);
  }
  return {
    title: { text: title, fontSize: 16 },
    width: WIDTH,
    height: 300,
    layer,
  } as TopLevelSpec;
}

/** The encoding of both ratio charts: log10 ratio against step, a line per weight. */
const RATIO_BY_WEIGHT = {
  x: { field: "step", type: "quantitative", title: "step" },
  y: { field: "y", type: "quantitative", title: "log10 ratio" },
  color: { field: "name", type: "nominal", title: null, sort: null, legend: { labelLimit: 300 } },
} as const;

/** Points of y against one parameter, with the mean at each value joined by a line. */
export function scatter(
  title: string,
  axes: { x: string; y: string; logX?: boolean },
  points: readonly { x: number; y: number; label: string }[],
): TopLevelSpec {
  const x = {
    field: "x",
    type: "quantitative",
    title: axes.x,
    scale: axes.logX ? { type: "log" } : { zero: false },
    // Ticks at the values swept and nowhere else; an explicit precision, since Vega derives
    // one from the tick step otherwise (100 came out as "1e+2").
    axis: { format: ".4~g", values: [...new Set(points.map((p) => p.x))].sort((a, b) => a - b) },
  };
  return {
    title: { text: title, fontSize: 16 },
    width: WIDTH / 2,
    height: 240,
    data: { values: points.filter((p) => Number.isFinite(p.y)) },
    layer: [
      {
        mark: { type: "point", filled: true, size: 50 },
        encoding: {
          x,
          y: { field: "y", type: "quantitative", title: axes.y, scale: { zero: false } },
          tooltip: { field: "label" },
        },
      },
      {
        mark: { type: "line", color: "#888" },
        encoding: { x, y: { aggregate: "mean", field: "y", type: "quantitative" } },
      },
    ],
  } as TopLevelSpec;
}

function lossChart(log: readonly LogEntry[]): TopLevelSpec | null {
  const train = log.flatMap((e) => "loss" in e ? [e] : []);
  const steps = train.at(-1)?.step ?? 0;
  // As the lecture: the mean of each bucket of 1000 steps (of fewer, for short runs).
  const bucket = steps >= 20_000 ? 1000 : 100;
  const buckets = new Map<number, { sum: number; n: number }>();
  let prev = 0;
  for (const e of train) {
    const b = Math.ceil(e.step / bucket) * bucket;
    const got = buckets.get(b) ?? { sum: 0, n: 0 };
    got.sum += e.loss * (e.step - prev);
    got.n += e.step - prev;
    buckets.set(b, got);
    prev = e.step;
  }
  const values = [
    ...[...buckets].filter(([, { n }]) => n > 0).map(([step, { sum, n }]) => ({
      step,
      loss: sum / n,
      split: `train (mean of ${bucket} steps)`,
    })),
    ...log.flatMap((e) => "val" in e ? [{ step: e.step, loss: e.val, split: "val" }] : []),
  ];
  if (values.length === 0) return null;
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
  // A ratio can be missing (null in JSON: a zero gradient has no logarithm): skip it.
  const values = tensors.flatMap((t) =>
    t.log10.flatMap((y, i) => Number.isFinite(y) ? [{ step: steps[i], y, name: t.name }] : [])
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
          ...RATIO_BY_WEIGHT,
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

/** Each weight's grad:data ratio (std of its gradient / std of its values) at every snapshot. */
function gradDataChart(snapshots: readonly SnapshotSummary[]): TopLevelSpec {
  const values = snapshots.flatMap((s) =>
    s.weights.flatMap((w) =>
      w.ratio > 0 && Number.isFinite(w.ratio)
        ? [{ step: s.step, y: Math.log10(w.ratio), name: w.name }]
        : []
    )
  );
  return {
    title: {
      text: "Grad:data ratio: log10(std(grad) / std(weight)), at each snapshot",
      fontSize: 16,
    },
    width: WIDTH,
    height: 240,
    data: { values },
    mark: { type: "line", point: true, strokeWidth: 1.5 },
    encoding: {
      ...RATIO_BY_WEIGHT,
    },
  };
}

/** The figures of a run, as Vega-Lite specifications by file name (without extension). */
export function figureSpecs(
  log: readonly LogEntry[],
  diag: Diagnostics | null,
): Map<string, TopLevelSpec> {
  const figures = new Map<string, TopLevelSpec>();
  const loss = lossChart(log);
  if (loss) figures.set("loss", loss);
  if (!diag) return figures;
  if (diag.updateRatios.steps.length) figures.set("update-ratio", ratioChart(diag));
  if (diag.snapshots.length === 0) return figures;
  figures.set("grad-data", gradDataChart(diag.snapshots));
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
  return figures;
}

/** A figure with the house style: white background, the DejaVu font, padding. */
export function styled(spec: TopLevelSpec): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    padding: 12,
    // labelOverlap: labels that would run into each other ("100120") are thinned out.
    config: {
      font: FONT,
      axis: { labelFontSize: 11, titleFontSize: 12, labelOverlap: "greedy", labelFlush: true },
    },
    ...spec,
  } as TopLevelSpec;
}

/** A figure as SVG text (headless: no DOM needed). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(styled(spec)).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
