/**
 * What makes two runs the same run (src/run_setup.ts): every setting named by the flag that sets
 * it, and the resume policy the command line, the batch runs and the lab share.
 */

import type { Checkpoint } from "../src/checkpoint.ts";
import { TRAIN_FLAGS } from "../src/cli/train_options.ts";
import { UserError } from "../src/errors.ts";
import { initModel, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { checkResume, describe, differences, FIELD_FLAGS, identityOf } from "../src/run_setup.ts";
import { DEFAULT_SCHEDULE } from "../src/schedule.ts";
import { assert, assertEquals, assertThrows } from "./util.ts";

const config = { ...PRESETS.lecture.model, vocabSize: 5, nHidden: 8 };
const ck: Checkpoint = {
  config,
  vocab: [".", "a", "b", "c", "d"],
  ...initModel(config, new Rng(1)),
  state: {
    step: 100,
    rng: [1, 2, 3, 4],
    train: { ...PRESETS.lecture.train, steps: 300 },
    seed: 42,
    seconds: 1,
    data: { path: "names.txt", sha256: "ab".repeat(32) },
    schedule: DEFAULT_SCHEDULE,
    calibrated: false,
    pendingLog: { sum: 0, count: 0 },
  },
};
const run = identityOf(ck);

Deno.test("run setup: every flag a difference names is a training flag", () => {
  const flags = new Set(Object.values(TRAIN_FLAGS).flatMap((g) => Object.keys(g)));
  for (const [field, flag] of Object.entries(FIELD_FLAGS)) {
    for (const named of flag.match(/--[\w-]+/g) ?? []) {
      assert(flags.has(named.slice(2)), `${field}: ${named} is not a training flag`);
    }
  }
});

Deno.test("run setup: the differences between two runs, named by their flags", () => {
  assertEquals(differences(run, run), []);
  const asked = { ...run, train: { ...run.train, steps: 500 }, seed: 7 };
  assertEquals(differences(asked, run).map(describe), [
    "--steps 500 (the run has 300)",
    "--seed 7 (the run has 42)",
  ]);
  assertEquals(differences(asked, run, ["train.steps"]).map((d) => d.flag), ["--seed"]);
  const noBn = { ...run, model: { ...run.model, batchNorm: false } };
  assertEquals(
    describe(differences(noBn, run)[0]),
    "--no-batchnorm (the run was trained without it)",
  );
});

Deno.test("run setup: a checkpoint goes on only as the run it is", () => {
  const asked = { ...run, train: { ...run.train, steps: 400 } };
  checkResume(ck, asked, "names.txt"); // more steps: fine
  const refused = (a: typeof asked, c = ck) =>
    assertThrows(() => checkResume(c, a, "other.txt"), UserError).message;
  assert(/other\.txt is not the data the checkpoint was trained on \(names\.txt/.test(
    refused({ ...asked, dataSha256: "cd".repeat(32) }),
  ));
  assert(
    /--lr 0\.5 \(the run has 0\.1\)/.test(
      refused({ ...asked, train: { ...asked.train, lr: 0.5 } }),
    ),
  );
  assert(
    /already trained 100 steps/.test(refused({ ...asked, train: { ...asked.train, steps: 50 } })),
  );
  const calibrated = { ...ck, state: { ...ck.state, calibrated: true } };
  assert(/recalibrated/.test(refused(asked, calibrated)));
});
