/// <reference lib="dom" />
/**
 * The lab page: wires the forms and buttons of src/lab/index.html to a Session
 * (src/lab/session.ts), and draws what it reports with the same Vega-Lite figures as the
 * command line (src/figures.ts). Bundled for the browser by `deno task lab`.
 *
 * Nothing here blocks the page for long: training yields at every chunk (a chunk ends with a
 * readback the page awaits), and the figures are redrawn at most once a second.
 */

import names from "../../data/names.txt" with { type: "text" };
import { UserError } from "../errors.ts";
import { figureSpecs, lines, renderSvg } from "../figures.ts";
import { makeDataset, parseWords } from "../data.ts";
import { describeAdapter, type Gpu, openGpu } from "../gpu/device.ts";
import { measureTraining } from "../gpu/speed.ts";
import { checkKernels, compileAll } from "../gpu/selftest.ts";
import type { Checkpoint } from "../checkpoint.ts";
import { duration } from "../format.ts";
import { networkText } from "../layers.ts";
import { networkOf, type PresetName, PRESETS, resizeModel } from "../model.ts";
import { type NumberRule, parseNumber, RULES } from "../settings.ts";
import type { Progress } from "../training.ts";
import {
  BROWSER_MESSAGES,
  type Phase,
  Session,
  type Settings,
  type StepChange,
} from "./session.ts";
import { AXES, type Axis, type ComparedRun, Comparison, parseValues } from "./compare.ts";
import "./hooks.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);

/** The one-line message bar: errors in red, notes plain. */
function say(text: string, kind: "error" | "note" = "error"): void {
  const m = $("message");
  m.textContent = text;
  m.className = kind === "note" ? "note" : "";
  m.hidden = false;
}
const clear = () => ($("message").hidden = true);

/** Runs a button's action; an exception becomes the message, never a dead page. */
function act(fn: () => Promise<void> | void): () => void {
  return () => {
    clear();
    Promise.resolve().then(fn).catch((e) => {
      say(e instanceof UserError || e instanceof Error ? e.message : String(e));
      updateButtons();
    });
  };
}

const MODEL_FIELDS = ["blockSize", "nEmbd", "nHidden", "nLayers"] as const;
const TRAIN_FIELDS = ["steps", "batchSize", "lr", "lrFinal", "decayAt"] as const;

/** The rule of every number field, the command line's (src/settings.ts). */
const FIELD_RULES: Readonly<Record<string, NumberRule>> = {
  blockSize: RULES.blockSize,
  nEmbd: RULES.nEmbd,
  nHidden: RULES.nHidden,
  nLayers: RULES.nLayers,
  steps: RULES.steps,
  batchSize: RULES.batchSize,
  lr: RULES.lr,
  lrFinal: RULES.lrFinal,
  decayAt: RULES.decayAt,
  seed: RULES.seed,
  // The page lists the names it samples: a thousand at most, where the command line prints more.
  count: { ...RULES.sampleCount, max: 1000 },
  temperature: RULES.temperature,
  topK: RULES.topK,
  sampleSeed: RULES.seed,
};

const labelOf = (id: string) => (input(id).parentElement!.firstChild?.textContent ?? id).trim();

/** Marks a field wrong, in place, with what is wrong; or clears the mark. */
function markField(id: string, error: string | null): void {
  const label = input(id).parentElement!;
  label.classList.toggle("invalid", error !== null);
  let note = label.nextElementSibling as HTMLElement | null;
  if (!note?.classList.contains("field-error")) {
    if (error === null) return;
    note = document.createElement("p");
    note.className = "field-error";
    label.after(note);
  }
  if (error === null) note.remove();
  else note.textContent = error;
}

/**
 * The numbers in fields `ids`, each checked by its rule: every wrong field is marked in place,
 * and the first one's message is the error thrown.
 */
function readFields<K extends string>(ids: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  let first: string | null = null;
  for (const id of ids) {
    const el = input(id);
    // A number field the browser cannot read (letters) has the value "".
    const v = el.validity.badInput
      ? { error: "must be a number" }
      : parseNumber(FIELD_RULES[id], el.value);
    const error = typeof v === "number" ? null : `${labelOf(id)} ${v.error}`;
    markField(id, error);
    if (typeof v === "number") out[id] = v;
    first ??= error;
  }
  if (first) throw new UserError(first);
  return out;
}

function fillPreset(name: PresetName): void {
  const p = PRESETS[name];
  for (const f of MODEL_FIELDS) input(f).value = String(p.model[f]);
  for (const f of TRAIN_FIELDS) input(f).value = String(p.train[f]);
}

/** The form's fields, from a checkpoint: what "Continue training it" runs with. */
function fillFromCheckpoint(ck: Checkpoint): void {
  for (const f of MODEL_FIELDS) input(f).value = String(ck.config[f]);
  for (const f of TRAIN_FIELDS) input(f).value = String(ck.state.train[f]);
  input("seed").value = String(ck.state.seed);
  writeUrl();
}

/** The preset's model resized by the form's fields, as the command line's flags resize it. */
function model(): Settings["model"] {
  const preset = PRESETS[$<HTMLSelectElement>("preset").value as PresetName];
  const v = readFields(MODEL_FIELDS);
  const sized = resizeModel(preset.model, v);
  if (typeof sized === "string") throw new UserError(sized);
  return sized;
}

/** The network the form describes, as makemore writes it, shown under the model's fields. */
function showNetwork(): void {
  let text: string;
  try {
    text = networkText(networkOf(model()));
  } catch (e) {
    text = e instanceof Error ? e.message : String(e);
  }
  $("network").textContent = text;
}

function settings(): Settings {
  const v = readFields([...TRAIN_FIELDS, "seed"]);
  return {
    model: model(),
    train: Object.fromEntries(TRAIN_FIELDS.map((f) => [f, v[f]])) as unknown as Settings["train"],
    seed: v.seed,
  };
}

let lastDraw = -Infinity;
let drawing = false;
let again = false;

/**
 * Redraws every figure from the session's log and diagnostics: at most once a second while
 * training, at once when `force`d (a phase change). A redraw asked for while one is drawing runs
 * when that one ends, so the figures left on the page are those of the last state, never an
 * earlier one. Each figure carries the state it shows (`data-entries`, `data-snapshots`).
 */
async function drawFigures(force = false): Promise<void> {
  if (!force && performance.now() - lastDraw < 1000) return;
  if (drawing) {
    again = true;
    return;
  }
  drawing = true;
  try {
    do {
      again = false;
      lastDraw = performance.now();
      await drawOnce();
    } while (again);
  } finally {
    drawing = false;
  }
}

async function drawOnce(): Promise<void> {
  const entries = session.sinks.entries.length;
  const diagnostics = session.trainer?.diagnostics ?? null;
  const snapshots = diagnostics?.snapshots.length ?? 0;
  // A finished run's final val loss (after the calibration) ends its val curve.
  const done = session.finished;
  const log = done && session.trainer
    ? [...session.sinks.entries, { step: session.trainer.step, val: done.losses.val }]
    : session.sinks.entries.slice();
  const specs = figureSpecs(log, diagnostics);
  const charts = $("charts");
  $("charts-empty").hidden = specs.size > 0;
  for (
    const name of [
      "loss",
      "update-ratio",
      "grad-data",
      "activations",
      "gradients",
      "weight-gradients",
    ]
  ) {
    const spec = specs.get(name);
    if (!spec) continue;
    let fig = document.getElementById(`fig-${name}`);
    if (!fig) {
      fig = document.createElement("figure");
      fig.id = `fig-${name}`;
      charts.append(fig);
    }
    fig.innerHTML = await renderSvg(spec);
    fig.dataset.entries = String(entries);
    fig.dataset.snapshots = String(snapshots);
  }
}

let slowHinted = false;

function showProgress(p: Progress): void {
  const bar = $<HTMLProgressElement>("bar");
  bar.max = p.steps;
  bar.value = p.step;
  const val = p.valLoss !== undefined ? `  val ${p.valLoss.toFixed(4)}` : "";
  const eta = Number.isFinite(p.etaSeconds) ? `  ETA ${duration(p.etaSeconds)}` : "";
  $("progress").textContent = `step ${p.step} / ${p.steps}  loss ${p.loss.toFixed(4)}${val}  ` +
    `${p.stepsPerSecond.toFixed(0)} steps/s${eta}`;
  // Hours of training on a CPU adapter deserve a word before the user waits them out.
  const software = /software fallback/.test(session.backend?.adapter ?? "");
  if (!slowHinted && software && p.etaSeconds > 600) {
    slowHinted = true;
    say(
      `about ${duration(p.etaSeconds)} to go: this adapter runs WebGPU on the CPU. Fewer ` +
        "steps, the lecture preset, or a browser with a GPU would be faster.",
      "note",
    );
  }
  drawFigures();
}

function showFinishing(fraction: number): void {
  const bar = $<HTMLProgressElement>("bar");
  bar.max = 1;
  bar.value = fraction;
  $("progress").textContent = `calibrating BatchNorm statistics over the training split: ` +
    `${(100 * fraction).toFixed(0)}%`;
}

function updateButtons(): void {
  const phase: Phase = session.phase;
  const busy = session.busy;
  $<HTMLButtonElement>("start").disabled = busy || !session.data || comparing;
  $<HTMLButtonElement>("one-step").disabled = busy || !session.data || comparing ||
    phase === "finished";
  $<HTMLButtonElement>("compare").disabled = busy || !session.data || comparing;
  $<HTMLButtonElement>("compare-stop").disabled = !comparing;
  $<HTMLButtonElement>("pause").disabled = phase !== "training";
  $<HTMLButtonElement>("resume").disabled = phase !== "paused";
  $<HTMLButtonElement>("reset").disabled = phase === "idle" && !session.trainer;
  $<HTMLButtonElement>("download").disabled = !session.sinks.checkpoint && !session.loaded;
  $<HTMLButtonElement>("continue").disabled = busy || !session.loaded;
  for (const id of ["model-settings", "train-settings"]) {
    $<HTMLFieldSetElement>(id).disabled = busy || comparing;
  }
}

const session = new Session({
  progress: showProgress,
  finishing: showFinishing,
  note: (text) => say(text, "note"),
  phase(phase, error) {
    if (error) say(error);
    if (phase === "idle" && !error) $("progress").textContent = "not started";
    if (phase === "starting") slowHinted = false;
    const done = session.finished;
    if (phase === "finished" && done) {
      const l = done.losses;
      $("progress").textContent = `finished ${session.trainer?.step} steps: loss train ` +
        `${l.train.toFixed(4)}, val ${l.val.toFixed(4)}, test ${l.test.toFixed(4)}`;
      // What was said while it finished (the calibration) is over.
      if ($("message").className === "note") clear();
    }
    if (session.backend) $("adapter").textContent = `WebGPU: ${session.backend.adapter}`;
    updateButtons();
    drawFigures(true);
  },
});

async function useData(bytes: Uint8Array, name: string, bundled = false): Promise<void> {
  const data = await session.setData(bytes, name);
  $("data-info").textContent = `${name}: ${data.words.length.toLocaleString("en-US")} names` +
    (bundled ? " (bundled: US births 2018)" : "");
  updateButtons();
}

async function useFile(file: File): Promise<void> {
  try {
    await useData(new Uint8Array(await file.arrayBuffer()), file.name);
  } catch (e) {
    // The picker must not show a file that is not the data in use.
    input("data-file").value = "";
    throw e;
  }
}

function download(bytes: Uint8Array, name: string): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>]));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Runs `fn` on a device of its own, destroyed after. */
async function withGpu<T>(fn: (gpu: Gpu) => Promise<T>): Promise<T> {
  const gpu = await openGpu(BROWSER_MESSAGES);
  try {
    return await fn(gpu);
  } finally {
    gpu.device.destroy();
  }
}

/**
 * The settings a link carries, by field id: the preset, the model and training fields, the
 * seed, and the comparison's setting and values. The address is rewritten as they change, so
 * that it is always a link to what the page would train.
 */
const URL_FIELDS = [
  "preset",
  ...MODEL_FIELDS,
  ...TRAIN_FIELDS,
  "seed",
  "compareAxis",
  "compareValues",
] as const;

const field = (id: string) => $<HTMLInputElement | HTMLSelectElement>(id);

function writeUrl(): void {
  const q = new URLSearchParams();
  for (const id of URL_FIELDS) q.set(id, field(id).value);
  history.replaceState(null, "", `${location.pathname}?${q}`);
  $<HTMLAnchorElement>("link").href = location.href;
}

/** The form from the page's address (a link to a run or a comparison), checked as typed. */
function readUrl(): void {
  const q = new URLSearchParams(location.search);
  const preset = q.get("preset");
  if (preset !== null) {
    if (!(preset in PRESETS)) {
      say(`the link's preset '${preset}' is not one of ${Object.keys(PRESETS).join(", ")}`);
    } else {
      $<HTMLSelectElement>("preset").value = preset;
      fillPreset(preset as PresetName);
    }
  }
  const axis = q.get("compareAxis");
  if (axis !== null && !(axis in AXES)) {
    say(`the link's comparison '${axis}' is not one of ${Object.keys(AXES).join(", ")}`);
  }
  for (const id of URL_FIELDS) {
    const v = q.get(id);
    if (v === null || id === "preset" || (id === "compareAxis" && !(v in AXES))) continue;
    field(id).value = v;
  }
  // Every number is checked now, as if typed: a wrong one is marked in its field.
  try {
    readFields([...MODEL_FIELDS, ...TRAIN_FIELDS, "seed"]);
  } catch (e) {
    say(`the link's settings: ${e instanceof Error ? e.message : String(e)}`);
  }
}

let comparison: Comparison | null = null;
let comparing = false;
let lastCompareDraw = -Infinity;
/** Each compared run's histograms, redrawn only when it has a new snapshot. */
const drawnSnapshots = new Map<string, number>();

function runLine(run: ComparedRun): string {
  if (run.error) return `${run.label}: ${run.error}`;
  const f = run.finished;
  if (f) {
    return `${run.label}: train ${f.losses.train.toFixed(4)}, val ${f.losses.val.toFixed(4)}, ` +
      `test ${f.losses.test.toFixed(4)}`;
  }
  const p = run.progress;
  return p ? `${run.label}: step ${p.step} / ${p.steps}, loss ${p.loss.toFixed(4)}` : run.label;
}

/** The compared runs: their list, their losses overlaid, their histograms side by side. */
async function drawComparison(force = false): Promise<void> {
  const c = comparison;
  if (!c || (!force && performance.now() - lastCompareDraw < 1000)) return;
  lastCompareDraw = performance.now();
  $("compare-runs").replaceChildren(...c.runs.map((run) => {
    const li = document.createElement("li");
    li.style.setProperty("--run", run.colour);
    li.textContent = runLine(run);
    return li;
  }));
  const section = $("compare-charts");
  section.hidden = false;
  let loss = document.getElementById("fig-compare-loss");
  if (!loss) {
    loss = document.createElement("figure");
    loss.id = "fig-compare-loss";
    section.append(loss);
  }
  const series = c.runs.map((run) => ({
    label: run.label,
    colour: run.colour,
    points: run.sinks.entries.flatMap((e) => "loss" in e ? [{ x: e.step, y: e.loss }] : []),
  }));
  loss.innerHTML = await renderSvg(
    lines(`Training loss: ${AXES[c.axis].label}`, { x: "step", y: "loss" }, series),
  );
  loss.dataset.entries = c.runs.map((r) => r.sinks.entries.length).join(",");
  for (const name of ["activations", "gradients"]) {
    let row = document.getElementById(`compare-${name}`);
    if (!row) {
      row = document.createElement("div");
      row.id = `compare-${name}`;
      row.className = "runs-row";
      section.append(row);
    }
    for (const [i, run] of c.runs.entries()) {
      const snapshots = run.trainer?.diagnostics.snapshots.length ?? 0;
      const key = `${name} ${i}`;
      let fig = row.children[i] as HTMLElement | undefined;
      if (!fig) {
        fig = document.createElement("figure");
        fig.style.setProperty("--run", run.colour);
        row.append(fig);
      }
      if (drawnSnapshots.get(key) === snapshots) continue;
      drawnSnapshots.set(key, snapshots);
      const spec = figureSpecs(run.sinks.entries, run.trainer?.diagnostics ?? null).get(name);
      fig.innerHTML = `<figcaption></figcaption>${spec ? await renderSvg(spec) : ""}`;
      fig.querySelector("figcaption")!.textContent = run.label;
      fig.dataset.snapshots = String(snapshots);
    }
  }
}

async function compareRuns(): Promise<void> {
  if (session.busy) throw new UserError("pause or reset the run before comparing");
  if (comparing) throw new UserError("a comparison is running: stop it first");
  if (!session.data) throw new UserError("no data loaded");
  const axis = $<HTMLSelectElement>("compareAxis").value as Axis;
  const values = parseValues(axis, input("compareValues").value);
  const c = new Comparison(axis, values, settings());
  comparison = c;
  comparing = true;
  drawnSnapshots.clear();
  const list = $("compare-runs");
  list.dataset.state = "training";
  for (const e of [...$("compare-charts").children]) e.remove();
  updateButtons();
  try {
    await c.run(session.data, () => void drawComparison());
  } finally {
    comparing = false;
    await drawComparison(true);
    list.dataset.state = c.runs.every((r) => r.finished || r.error) ? "finished" : "stopped";
    updateButtons();
  }
}

/** What "One step" changed: its loss, and each tensor's update-to-data ratio. */
function showStepChange(c: StepChange): void {
  const box = $("step-change");
  const table = document.createElement("table");
  const row = (cells: string[], th = false) => {
    const tr = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement(th ? "th" : "td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  };
  table.append(
    row(["tensor", "log10 update / data", "largest change"], true),
    ...c.tensors.map((t) => row([t.name, t.ratio.toFixed(2), t.maxChange.toExponential(2)])),
  );
  const head = document.createElement("p");
  head.className = "meta";
  head.textContent = `step ${c.step} at learning rate ${c.lr}: loss ${c.loss.toFixed(4)}; ` +
    "what it changed:";
  box.replaceChildren(head, table);
  box.dataset.step = String(c.step);
  box.hidden = false;
}

function wire(): void {
  const preset = $<HTMLSelectElement>("preset");
  for (const [name, p] of Object.entries(PRESETS)) {
    preset.append(new Option(`${name}: ${p.description}`, name));
  }
  preset.addEventListener("change", () => {
    fillPreset(preset.value as PresetName);
    showNetwork();
  });
  fillPreset("seed");
  for (const f of MODEL_FIELDS) input(f).addEventListener("input", showNetwork);
  const axis = $<HTMLSelectElement>("compareAxis");
  for (const [name, a] of Object.entries(AXES)) axis.append(new Option(a.label, name));
  for (const id of URL_FIELDS) {
    field(id).addEventListener("input", writeUrl);
    field(id).addEventListener("change", writeUrl);
  }
  $("compare").addEventListener("click", act(compareRuns));
  $("compare-stop").addEventListener("click", act(() => comparison?.stop()));
  $("one-step").addEventListener(
    "click",
    act(async () => showStepChange(await session.oneStep(settings()))),
  );

  input("data-file").addEventListener(
    "change",
    act(async () => {
      const file = input("data-file").files?.[0];
      if (file) await useFile(file);
    }),
  );
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer?.files[0];
    if (file) act(() => useFile(file))();
  });
  $("data-bundled").addEventListener(
    "click",
    act(() => useData(new TextEncoder().encode(names), "names.txt", true)),
  );

  $("start").addEventListener("click", act(() => session.start(settings())));
  $("pause").addEventListener("click", act(() => session.pause()));
  $("resume").addEventListener("click", act(() => session.resume()));
  $("reset").addEventListener(
    "click",
    act(async () => {
      const done = session.reset();
      for (const f of $("charts").querySelectorAll("figure")) f.remove();
      $("charts-empty").hidden = false;
      $<HTMLProgressElement>("bar").value = 0;
      await done;
    }),
  );
  $("continue").addEventListener(
    "click",
    act(() => {
      const run = session.start(settings(), true);
      say(
        "continuing the checkpoint's run: its model and training settings (in the form), to the " +
          "number of steps the form asks for",
        "note",
      );
      return run;
    }),
  );
  for (const id of Object.keys(FIELD_RULES)) {
    const rule = FIELD_RULES[id];
    const el = input(id);
    if (rule.min !== undefined) el.min = String(rule.min);
    if (rule.max !== undefined) el.max = String(rule.max);
    el.step = rule.kind === "int" ? "1" : "any";
    el.addEventListener("input", () => markField(id, null));
  }

  $("sample").addEventListener(
    "click",
    act(async () => {
      const v = readFields(["count", "sampleSeed", "temperature", "topK"] as const);
      const list = await session.sample({
        count: v.count,
        seed: v.sampleSeed,
        temperature: v.temperature,
        topK: v.topK,
        prefix: input("prefix").value,
      });
      const ol = $("samples");
      ol.replaceChildren(...list.map((s) => {
        const li = document.createElement("li");
        li.textContent = s.name;
        if (s.inTrain) li.className = "known";
        return li;
      }));
    }),
  );

  $("download").addEventListener(
    "click",
    act(() => {
      download(session.checkpointBytes(), "model.safetensors");
    }),
  );
  input("ck-file").addEventListener(
    "change",
    act(async () => {
      const file = input("ck-file").files?.[0];
      if (!file) return;
      let ck: Checkpoint;
      try {
        ck = session.loadCheckpoint(new Uint8Array(await file.arrayBuffer()), file.name);
      } catch (e) {
        input("ck-file").value = "";
        throw e;
      }
      fillFromCheckpoint(ck);
      const c = ck.config;
      $("ck-info").textContent = `${file.name}: ${c.nLayers} x ${c.nHidden} hidden, context ` +
        `${c.blockSize}, trained ${ck.state.step} steps on ${ck.state.data.path}`;
      updateButtons();
    }),
  );

  $("selftest").addEventListener(
    "click",
    act(async () => {
      const out = $("selftest-result");
      out.textContent = "checking...";
      const gpu = await openGpu(BROWSER_MESSAGES);
      try {
        const results = await checkKernels(gpu);
        const bad = results.filter((r) => !(r.error <= r.tolerance));
        const worst = Math.max(...results.map((r) => r.error));
        out.textContent = bad.length
          ? `${bad.length} of ${results.length} tensors differ: ${bad[0].name}, by ` +
            `${bad[0].error.toPrecision(2)} times what WGSL allows`
          : `all ${results.length} tensors agree (the largest error is ` +
            `${(100 * worst).toFixed(1)}% of what WGSL allows)`;
      } finally {
        gpu.device.destroy();
      }
    }),
  );
}

async function main(): Promise<void> {
  wire();
  readUrl();
  writeUrl();
  showNetwork();
  globalThis.lab = {
    session,
    comparison: () => comparison,
    ready: false,
    // GpuBackend -> GpuModel -> device; destroying it from outside is a loss to the page.
    loseDevice: () =>
      (session.backend as unknown as { model: { device: GPUDevice } }).model.device.destroy(),
    compileKernels: () => withGpu(compileAll),
    checkKernels: () => withGpu((gpu) => checkKernels(gpu)),
    bench: (preset, rounds, chunks, chunkSteps) =>
      withGpu(async (gpu) => {
        const p = PRESETS[preset];
        const words = parseWords(new TextEncoder().encode(names), "names.txt");
        const ds = makeDataset(words, p.model.blockSize, 42);
        const config = { ...p.model, vocabSize: ds.vocab.size };
        const s = await measureTraining(gpu, config, ds.examples.train, {
          batchSize: p.train.batchSize,
          rounds,
          chunks,
          chunkSteps,
        });
        return { usPerStep: s.usPerStep, adapter: describeAdapter(gpu.adapter) };
      }),
  };
  await useData(new TextEncoder().encode(names), "names.txt", true);
  if (!("gpu" in navigator) || !navigator.gpu) say(BROWSER_MESSAGES.noWebGpu);
  else $("adapter").textContent = "WebGPU: available (the adapter is opened when training starts)";
  updateButtons();
  globalThis.lab.ready = true;
}

main().catch((e) => say(e instanceof Error ? e.message : String(e)));
