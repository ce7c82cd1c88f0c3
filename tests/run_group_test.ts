/**
 * Runs trained as one group of replicas (src/run_group.ts) against the same runs trained alone
 * (src/run.ts): each leaves the same checkpoint, log, losses and samples, with its own seed,
 * learning rate and BatchNorm momentum; a run that goes NaN fails alone, with its message; a
 * group stopped by a signal and resumed ends as the runs alone do. Both kernel families.
 */

import names from "../data/names.txt" with { type: "text" };
import type { KernelChoice } from "../src/backend.ts";
import { decodeCheckpoint } from "../src/checkpoint.ts";
import { UserError } from "../src/errors.ts";
import { PRESETS } from "../src/model.ts";
import { run, type RunOptions, type RunReporter } from "../src/run.ts";
import { runGroup } from "../src/run_group.ts";
import { CHECKPOINT_FILE, LOG_FILE, readRunReport } from "../src/run_dir.ts";
import { assert, assertEquals, testWith } from "./util.ts";

const quiet: RunReporter = { start() {}, progress() {}, note() {} };

/** A reporter that stops the run (through `stop`) at the first chunk boundary past `at`. */
const stopAt = (at: number, stop: AbortController): RunReporter => ({
  ...quiet,
  progress(p) {
    if (p.step >= at) stop.abort();
  },
});

function options(dir: string, kernels: KernelChoice): RunOptions[] {
  const base: RunOptions = {
    dataPath: `${dir}/names.txt`,
    outDir: "",
    model: { ...PRESETS.seed.model, nHidden: 24, nLayers: 2 },
    train: { ...PRESETS.seed.train, steps: 700, decayAt: 450 },
    seed: 1,
    backend: "webgpu",
    kernels,
    mode: "new",
    schedule: {
      evalEvery: 250,
      checkpointEvery: 250,
      calibrate: true,
      logEvery: 100,
      samples: 3,
      diagnostics: true,
      diagEvery: 300,
    },
  };
  return [
    base,
    {
      ...base,
      seed: 2,
      model: { ...base.model, bnMomentum: 0.01 },
      train: { ...base.train, lr: 0.05 },
    },
    { ...base, seed: 3, train: { ...base.train, lr: 1e30 } }, // goes NaN
    { ...base, seed: 4, model: { ...base.model, init: "unit" } },
  ];
}

/** What a finished run leaves that must not depend on how it was trained. */
async function outcome(dir: string) {
  const ck = decodeCheckpoint(await Deno.readFile(`${dir}/${CHECKPOINT_FILE}`), dir);
  const report = await readRunReport(dir);
  return {
    params: ck.params,
    buffers: ck.buffers,
    step: ck.state.step,
    rng: ck.state.rng,
    log: await Deno.readTextFile(`${dir}/${LOG_FILE}`),
    losses: report?.losses,
    samples: report?.samples,
  };
}

for (const kernels of ["software", "gpu"] as const) {
  testWith(
    ["read", "write"],
    `group (${kernels}): each run of a group is its solo run; a NaN run fails alone; a stopped group resumes`,
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "makemore-group-" });
      try {
        await Deno.writeTextFile(`${dir}/names.txt`, names.split("\n").slice(0, 400).join("\n"));
        const list = options(dir, kernels);
        const at = (where: string) =>
          list.map((o, i) => ({ ...o, outDir: `${dir}/${where}/${i}` }));
        const solo = at("solo");
        for (const [i, o] of solo.entries()) {
          if (i === 2) continue;
          await run(o, quiet);
        }
        const grouped = at("group");
        const results = await runGroup(grouped, grouped.map(() => quiet), undefined, kernels);
        const failed = results[2];
        assert(failed.status === "rejected", "the NaN run failed");
        assert(failed.reason instanceof UserError, String(failed.reason));
        assert(/the loss became (NaN|Infinity)/.test(failed.reason.message), failed.reason.message);
        for (const i of [0, 1, 3]) {
          assertEquals(results[i].status, "fulfilled", `run ${i}`);
          assertEquals(await outcome(grouped[i].outDir), await outcome(solo[i].outDir), `run ${i}`);
        }
        // Stopped by one signal at a chunk boundary, then resumed: each as its run alone.
        const stopped = at("stopped");
        const stop = new AbortController();
        const first = await runGroup(
          stopped,
          stopped.map((_, i) => i === 0 ? stopAt(300, stop) : quiet),
          stop.signal,
          kernels,
        );
        for (const i of [0, 1, 3]) {
          const r = first[i];
          assert(r.status === "fulfilled" && r.value.interrupted, `run ${i} was stopped`);
          assert(r.value.step < 700, `run ${i} stopped at ${r.value.step}`);
        }
        const resumed = stopped.map((o) => ({ ...o, mode: "resume" as const }));
        const second = await runGroup(
          [0, 1, 3].map((i) => resumed[i]),
          [quiet, quiet, quiet],
          undefined,
          kernels,
        );
        assert(second.every((r) => r.status === "fulfilled" && !r.value.interrupted));
        for (const i of [0, 1, 3]) {
          assertEquals(await outcome(stopped[i].outDir), await outcome(solo[i].outDir), `run ${i}`);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}
