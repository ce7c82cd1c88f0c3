/**
 * What the tests share: assertions (one closeness check for tensors), random inputs, the
 * WebGPU device of a test module, the fixture of "the same model on the CPU and on the GPU",
 * running the command-line tools, and tests that need permissions.
 */

import nodeAssert from "node:assert";
import denoJson from "../deno.json" with { type: "json" };
import type { Rng } from "../src/rng.ts";
import { type Gpu, openGpu } from "../src/gpu/device.ts";
import { CpuModel, type TanhError } from "../src/cpu/model.ts";
import { TANH_ABS, U } from "../src/gpu/accuracy.ts";
import { GpuModel, type GpuModelOptions } from "../src/gpu/model.ts";
import { initModel, type ModelConfig } from "../src/model.ts";
import { Rng as Generator } from "../src/rng.ts";

/**
 * `deno task test` starts wgpu without its OpenGL backend (DENO_WEBGPU_BACKEND in deno.json's
 * test task): with it, `deno test` died at exit now and then, a module's thread ending in EGL while
 * the main thread ran libEGL's destructors (issue #10; README, "Tests"). A plain `deno test` with
 * --allow-env gets the same value here, before any test asks for an adapter (Deno reads the
 * variable when a runtime makes its first WebGPU instance); a value already set is left alone.
 * Children (the command-line tools, Chromium) inherit it, which changes nothing else for them.
 */
const WEBGPU_BACKENDS = /^DENO_WEBGPU_BACKEND=(\S+) /.exec(denoJson.tasks.test)?.[1];
if (
  WEBGPU_BACKENDS !== undefined &&
  Deno.permissions.querySync({ name: "env", variable: "DENO_WEBGPU_BACKEND" }).state ===
    "granted" &&
  Deno.env.get("DENO_WEBGPU_BACKEND") === undefined
) {
  Deno.env.set("DENO_WEBGPU_BACKEND", WEBGPU_BACKENDS);
}

// Deno's @std/assert lives on JSR, which this project cannot reach: node:assert under the
// names Deno users know.
export function assert(cond: unknown, message?: string): asserts cond {
  nodeAssert.ok(cond, message);
}
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}
/** Runs fn, asserts it throws (an instance of `type`, when given) and returns the error. */
export function assertThrows(fn: () => unknown, type?: new (...a: never[]) => Error): Error {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`threw a non-Error: ${e}`);
    if (type && !(e instanceof type)) throw new Error(`expected ${type.name}, got ${e}`);
    return e;
  }
  throw new Error("expected an exception");
}
/** Awaits p, asserts it rejects (with a `type`, when given) and returns the error. */
export async function assertRejects(
  p: Promise<unknown>,
  type?: new (...a: never[]) => Error,
): Promise<Error> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`rejected with a non-Error: ${e}`);
    if (type && !(e instanceof type)) throw new Error(`expected ${type.name}, got ${e}`);
    return e;
  }
  throw new Error("expected a rejection");
}

/**
 * The closeness of two tensors, the one way every test compares numbers: the largest
 * |actual - expected| relative to the tensor's own scale, max |expected| (or `floor`, when
 * larger: for tensors that are zero up to rounding), must be at most `tol`.
 */
/** max |actual - expected| over the scale of `expected` (or `floor`, when larger). */
export function relativeError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  floor = 0,
): number {
  if (actual.length !== expected.length) return Infinity;
  let err = 0;
  let scale = floor;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? err : err / scale;
}

export function assertClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  floor = 0,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${name}: length ${actual.length}, expected ${expected.length}`);
  }
  const rel = relativeError(actual, expected, floor);
  if (!(rel <= tol)) {
    const scale = Array.from(expected).reduce((m, v) => Math.max(m, Math.abs(v)), floor);
    throw new Error(`${name}: relative error ${rel.toExponential(2)} > ${tol} (scale ${scale})`);
  }
}

/** Makes the CPU reference model of a computation, from an initialization. */
export type ReferenceModel = (
  config: ModelConfig,
  params: Float32Array,
  buffers: Float32Array,
) => CpuModel;

/**
 * Tolerances for comparing a GPU computation with the float32 CPU reference where errors
 * compound (many training steps, whole forward passes), which no bound derived from WGSL's
 * accuracy rules keeps useful (src/gpu/accuracy.ts bounds single kernels). `run` computes the
 * compared values, named, with the reference models it is handed. A conformant GPU's drift is
 * estimated as the largest difference, relative to each value's scale, between the float64
 * reference and: the float32 reference (the rounding every implementation does, in its own
 * order), and the float32 reference with tanh as far off as WGSL allows (1e-5), up, down and in
 * a mixed pattern. The GPU and the float32 reference may each drift that far, and a value's
 * last operations may round differently on each side even where nothing compounds (a few ULPs
 * of the tensor's scale): the tolerance of each value is twice its drift plus 16 U.
 */
export function conformantTolerances(
  run: (make: ReferenceModel) => Record<string, ArrayLike<number>>,
): Record<string, number> {
  const exact = run((c, p, b) => new CpuModel(c, Float64Array.from(p), Float64Array.from(b)));
  const errors: (TanhError | undefined)[] = [
    undefined,
    ...(["up", "down", "mixed"] as const).map((pattern) => ({ size: TANH_ABS, pattern })),
  ];
  const drift: Record<string, number> = Object.fromEntries(Object.keys(exact).map((k) => [k, 0]));
  for (const e of errors) {
    const got = run((c, p, b) => new CpuModel(c, Float32Array.from(p), Float32Array.from(b), e));
    for (const k of Object.keys(exact)) {
      drift[k] = Math.max(drift[k], relativeError(got[k], exact[k]));
    }
  }
  return Object.fromEntries(Object.entries(drift).map(([k, d]) => [k, 2 * d + 16 * U]));
}

export function randn(rng: Rng, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal() * scale);
}

export function randInts(rng: Rng, n: number, bound: number): Int32Array<ArrayBuffer> {
  return Int32Array.from({ length: n }, () => rng.randint(bound));
}

/**
 * Compares an analytic gradient with central finite differences of `f` with respect to `x`
 * (perturbed in place and restored). In float64 with h = 1e-5 the truncation error is
 * O(h^2) ~ 1e-10 and the rounding error ~ 1e-16 / h ~ 1e-11 relative to f, so 1e-6 of the
 * gradient's scale is a tight bound that a wrong formula cannot pass.
 */
export function assertGradClose(
  name: string,
  x: Float64Array,
  analytic: ArrayLike<number>,
  f: () => number,
  tol = 1e-6,
  h = 1e-5,
): void {
  const numeric = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const orig = x[i];
    x[i] = orig + h;
    const fp = f();
    x[i] = orig - h;
    const fm = f();
    x[i] = orig;
    numeric[i] = (fp - fm) / (2 * h);
  }
  if (Array.from(analytic).every((g) => g === 0)) {
    throw new Error(`${name}: analytic gradient is all zero; the test is vacuous`);
  }
  assertClose(`${name} (analytic vs finite differences)`, analytic, numeric, tol);
}

/** sum(out * w): a scalar whose gradient with respect to `out` is the arbitrary `w`. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

let moduleGpu: Promise<Gpu> | undefined;

/**
 * The WebGPU device of this test module: opened once, destroyed when the module's tests end.
 * (One device per module rather than per test: devices are costly to open and tear down.)
 */
export function gpu(): Promise<Gpu> {
  moduleGpu ??= openGpu().then((g) => {
    globalThis.addEventListener("unload", () => g.device.destroy());
    return g;
  });
  return moduleGpu;
}

/** The same model, from the same initialization, on the CPU (float32) and on the GPU. */
export interface ModelPair extends AsyncDisposable {
  readonly cpu: CpuModel;
  readonly gpu: GpuModel;
  readonly init: { params: Float32Array; buffers: Float32Array };
}

/** `await using m = await modelPair(config, opts)`: the GPU model is destroyed at scope end. */
export async function modelPair(
  config: ModelConfig,
  opts: GpuModelOptions & { initSeed?: number },
): Promise<ModelPair> {
  const init = initModel(config, new Generator(opts.initSeed ?? 3));
  const model = await GpuModel.create(await gpu(), config, opts);
  model.setParams(init.params, init.buffers);
  return {
    init,
    cpu: new CpuModel(config, Float32Array.from(init.params), Float32Array.from(init.buffers)),
    gpu: model,
    [Symbol.asyncDispose]: async () => {
      // Everything submitted must be done before its buffers go.
      await model.device.queue.onSubmittedWorkDone();
      model.destroy();
    },
  };
}

/** A batch of `rows` random contexts and targets, in the layout trainChunk takes. */
export function randomBatch(rng: Rng, config: ModelConfig, rows: number) {
  const ctx = randInts(rng, rows * config.blockSize, config.vocabSize);
  const targets = randInts(rng, rows, config.vocabSize);
  return { ctx, targets, batch: new Int32Array([...ctx, ...targets]) };
}

/** The permissions a test needs beyond what plain `deno test --unstable-webgpu` grants. */
type Needs = readonly ("read" | "write" | "run" | "env" | "net")[];

// The network is needed only on the loopback (the lab's server), which is all `deno task test`
// grants: a query without a host would say "prompt" there.
const granted = (needs: Needs) =>
  needs.every((name) =>
    Deno.permissions.querySync(name === "net" ? { name, host: "127.0.0.1" } : { name }).state ===
      "granted"
  );

/**
 * A test that needs permissions (files, subprocesses). Without them (plain `deno test`), it is
 * reported as ignored, and its name says what it needs and which command runs it.
 */
export function testWith(
  needs: Needs,
  name: string,
  fn: (t: Deno.TestContext) => Promise<void> | void,
): void {
  const ok = granted(needs);
  Deno.test({
    name: ok ? name : `${name} [skipped: needs --allow-${needs.join(", --allow-")}; ` +
      "run `deno task test`]",
    ignore: !ok,
    fn,
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The command that runs one of the project's tools in a fresh Deno process. */
export function cliCommand(
  script: string,
  args: string[],
  opts: { permissions?: string[]; env?: Record<string, string>; cwd?: string } = {},
): Deno.Command {
  const path = new URL(`../src/cli/${script}`, import.meta.url).pathname;
  const permissions = opts.permissions ?? ["--allow-read", "--allow-write", "--allow-env"];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...permissions, path, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
    cwd: opts.cwd,
  });
}

/** A tool running in the background, told to hold at a step (MAKEMORE_HOLD_AT_STEP). */
export interface HeldTool {
  readonly child: Deno.ChildProcess;
  /** Sends `signal`, reads the rest, and returns the exit code and stderr. */
  stop(signal: Deno.Signal): Promise<{ code: number; stderr: string }>;
}

/**
 * Starts one of the project's tools in the background with its runs told to hold at step
 * `holdAt` (see MAKEMORE_HOLD_AT_STEP in src/cli/train.ts); resolves once its stdout shows
 * `held`, so that a signal sent then finds it running whatever the machine's speed.
 */
export async function spawnHeld(
  script: string,
  args: string[],
  o: { holdAt: number; held: RegExp; permissions?: string[] },
): Promise<HeldTool> {
  const child = cliCommand(script, args, {
    permissions: o.permissions,
    env: { MAKEMORE_HOLD_AT_STEP: String(o.holdAt) },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!o.held.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${script} ended before it held at step ${o.holdAt}:\n${seen}`);
    seen += value;
  }
  return {
    child,
    async stop(signal) {
      child.kill(signal);
      while (!(await reader.read()).done) { /* drain */ }
      const status = await child.status;
      return { code: status.code, stderr: await new Response(child.stderr).text() };
    },
  };
}

/** Runs one of the project's command-line tools in a fresh Deno process. */
export async function runCli(
  script: string,
  args: string[],
  opts: { permissions?: string[]; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  const out = await cliCommand(script, args, opts).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
