/** Helpers shared by the tests. */

import nodeAssert from "node:assert";
import type { Rng } from "../src/rng.ts";
import { type Gpu, openGpu } from "../src/gpu/device.ts";

// Deno's @std/assert lives on JSR, which this project cannot reach; node:assert under the
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

export function randn(rng: Rng, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal() * scale);
}

export function randInts(rng: Rng, n: number, bound: number): Int32Array {
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
  let scale = 0;
  for (let i = 0; i < x.length; i++) scale = Math.max(scale, Math.abs(analytic[i]));
  if (scale === 0) throw new Error(`${name}: analytic gradient is all zero; the test is vacuous`);
  for (let i = 0; i < x.length; i++) {
    const orig = x[i];
    x[i] = orig + h;
    const fp = f();
    x[i] = orig - h;
    const fm = f();
    x[i] = orig;
    const numeric = (fp - fm) / (2 * h);
    const err = Math.abs(numeric - analytic[i]) / scale;
    if (!(err <= tol)) {
      throw new Error(
        `${name}[${i}]: analytic ${analytic[i]} vs numeric ${numeric} (error ${err} of scale)`,
      );
    }
  }
}

/** sum(out * w): a scalar whose gradient with respect to `out` is the arbitrary `w`. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * max |a - b| / max(|b|): one relative error for a whole tensor. `floor` bounds the scale from
 * below, for tensors that are zero up to rounding (a bias feeding a BatchNorm has no gradient).
 */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let err = 0;
  let scale = floor;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? err : err / scale;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one of the project's command-line tools in a fresh Deno process. */
export async function runCli(
  script: string,
  args: string[],
  permissions = ["--allow-read", "--allow-write", "--allow-env"],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const path = new URL(`../src/cli/${script}`, import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...permissions, path, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `fn` with a fresh WebGPU device and destroys the device afterwards. */
export async function withGpu<T>(fn: (gpu: Gpu) => Promise<T>): Promise<T> {
  const gpu = await openGpu();
  try {
    return await fn(gpu);
  } finally {
    gpu.device.destroy();
  }
}
