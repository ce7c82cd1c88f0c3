/**
 * A group of replicas trained in the same dispatches against each replica trained alone
 * (src/gpu/replica_check.ts): bit-identical losses, moments, snapshots, parameters, evaluation
 * and calibration, with one replica driven to NaN; both kernel families, on llvmpipe (and in
 * Chromium: the lab's kernel check runs the same, tests/browser_test.ts).
 */

import type { FamilyName } from "../src/gpu/family.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { checkReplicas } from "../src/gpu/replica_check.ts";
import { REPLICA_CASES } from "../src/gpu/selftest.ts";
import { assert, assertEquals, gpu } from "./util.ts";

for (const family of Object.keys(FAMILIES) as FamilyName[]) {
  for (const c of REPLICA_CASES) {
    Deno.test(`replicas (${family}: ${c.name}, batch ${c.batch}): each equals its solo run`, async () => {
      const results = await checkReplicas(await gpu(), c.config, c.batch, family, 4);
      assert(results.length > 4 * 10, `${results.length} comparisons`);
      assertEquals(results.filter((r) => !(r.error <= r.tolerance)), []);
    });
  }
}
