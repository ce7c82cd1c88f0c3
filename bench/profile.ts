/**
 * The per-kernel breakdown of `deno task bench`: every dispatch of a training step timed alone,
 * `reps` copies in one pass against the current state (the parameters are not changed: the
 * updates go to the other copy, which the timed copies keep overwriting). Waiting for the GPU
 * costs ~12 ms on llvmpipe whatever the work, so each dispatch is timed at two counts and the
 * difference taken.
 */

import type { GpuModel } from "../src/gpu/model.ts";

export interface KernelTime {
  readonly kernel: string;
  readonly op: number;
  readonly us: number;
}

export async function profileStep(model: GpuModel, reps = 50): Promise<KernelTime[]> {
  const device = model.device;
  model.writeTrainingStep(0);
  const time = async (d: ReturnType<GpuModel["stepDispatches"]>[number], n: number) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    model.bindStep(pass, 0);
    model.encode(pass, new Array(n).fill(d));
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  const out: KernelTime[] = [];
  for (const d of model.stepDispatches()) {
    await time(d, 2); // warm-up
    let few = Infinity;
    let many = Infinity;
    for (let t = 0; t < 3; t++) {
      few = Math.min(few, await time(d, 2));
      many = Math.min(many, await time(d, 2 + reps));
    }
    out.push({ kernel: d.kernel, op: d.op, us: ((many - few) / reps) * 1000 });
  }
  return out;
}
