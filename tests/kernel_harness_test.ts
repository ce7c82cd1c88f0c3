/**
 * Each kernel alone against its CPU op (src/gpu/kernel_check.ts), as llm.c's dev/cuda checks
 * each kernel: for both families, on every shape of KERNEL_CASES, one test step per kernel
 * variant, so that a mistake in one kernel fails that kernel's step, by name, and no other.
 * tests/browser_test.ts runs the same harness in Chromium (through the lab's checkKernels).
 */

import type { FamilyName } from "../src/gpu/family.ts";
import { checkEachKernel } from "../src/gpu/kernel_check.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { KERNEL_CASES } from "../src/gpu/selftest.ts";
import { assert, gpu } from "./util.ts";

for (const family of Object.keys(FAMILIES) as FamilyName[]) {
  Deno.test(`each ${family} kernel alone matches its CPU op`, async (t) => {
    const g = await gpu();
    /** Per kernel variant: how many tensors it was checked on, and the failures, named. */
    const byKernel = new Map<string, { checked: number; bad: string[] }>();
    for (const c of KERNEL_CASES) {
      for (const r of await checkEachKernel(g, c.config, c.batch, family)) {
        const k = byKernel.get(r.kernel) ?? { checked: 0, bad: [] };
        byKernel.set(r.kernel, k);
        for (const x of r.comparisons) {
          k.checked++;
          if (!(x.error <= x.tolerance)) {
            k.bad.push(
              `${c.name}, batch ${c.batch}, ${r.what}: ${x.name}: ${
                x.error.toExponential(2)
              } bounds`,
            );
          }
        }
      }
    }
    for (const kernel of Object.keys(FAMILIES[family].entryPoints)) {
      await t.step(`${family} ${kernel}`, () => {
        const k = byKernel.get(kernel);
        assert(k, `${kernel} is never dispatched by KERNEL_CASES`);
        assert(k.bad.length === 0, k.bad.slice(0, 8).join("\n"));
      });
    }
  });
}
