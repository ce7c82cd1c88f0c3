/**
 * The run directory (src/run_dir.ts): what it refuses and when, its lock, the leftovers of a
 * killed run, and reading back what a run cut short left behind.
 */

import { UserError } from "../src/errors.ts";
import { DEFAULT_SCHEDULE } from "../src/schedule.ts";
import { initModel, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { readDiagnostics, readLog, RunDir } from "../src/run_dir.ts";
import type { Checkpoint } from "../src/checkpoint.ts";
import { emptyDiagnostics } from "../src/diagnostics.ts";
import { assert, assertEquals, assertRejects, testWith } from "./util.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-rundir-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const config = { ...PRESETS.lecture.model, vocabSize: 3, blockSize: 1, nEmbd: 2, nHidden: 3 };
const checkpoint = (step: number): Checkpoint => ({
  config,
  vocab: [".", "a", "b"],
  ...initModel(config, new Rng(1)),
  state: {
    step,
    rng: [1, 2, 3, 4],
    train: { ...PRESETS.lecture.train, steps: 1000 },
    seed: 1,
    seconds: 0,
    data: { path: "/x", sha256: "0".repeat(64) },
    schedule: DEFAULT_SCHEDULE,
    calibrated: false,
    pendingLog: { sum: 0, count: 0 },
  },
});

const NEEDS = ["read", "write"] as const;

testWith(
  NEEDS,
  "run_dir: check creates nothing; open creates, locks, and refuses what it must",
  async () => {
    await inTempDir(async (dir) => {
      await RunDir.check(`${dir}/a/b`, "new");
      assert(!(await Deno.stat(`${dir}/a`).catch(() => null)), "check created nothing");
      await assertRejects(RunDir.check(`${dir}/a`, "resume"), UserError);
      const run = await RunDir.open(`${dir}/a/b`, "new");
      // A second opener, or a checker, is refused while the first holds the lock. (Started one
      // at a time: a rejection that comes while the test awaits another is an uncaught error.)
      for (
        const attempt of [
          () => RunDir.open(`${dir}/a/b`, "resume"),
          () => RunDir.check(`${dir}/a/b`, "overwrite"),
        ]
      ) {
        const err = await assertRejects(attempt(), UserError);
        assert(
          new RegExp(`another run is writing there \\(process ${Deno.pid}, since`).test(
            err.message,
          ),
          err.message,
        );
      }
      const sinks = await run.sinks(0);
      await sinks.log({ step: 100, loss: 3, lr: 0.1 });
      await sinks.save(checkpoint(100), emptyDiagnostics());
      run.close();
      // Closed: free again. A new run is refused (a run is there), --overwrite replaces it.
      const err = await assertRejects(RunDir.check(`${dir}/a/b`, "new"), UserError);
      assert(
        /already holds a run \(.*model\.safetensors.*\): continue it with --resume/.test(
          err.message,
        ),
        err.message,
      );
      await Deno.writeTextFile(`${dir}/a/b/notes.txt`, "mine");
      await Deno.writeTextFile(`${dir}/a/b/log.jsonl.123.tmp`, "left by a killed run");
      const again = await RunDir.open(`${dir}/a/b`, "overwrite");
      again.close();
      const left = [...Deno.readDirSync(`${dir}/a/b`)].map((e) => e.name).sort();
      assertEquals(
        left,
        [".lock", "notes.txt"],
        "run files and stale temporary files are gone, yours stay",
      );
    });
  },
);

testWith(
  NEEDS,
  "run_dir: the directory is checked before any work: files in the way, empty paths",
  async () => {
    await inTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/f`, "");
      for (
        const [path, pattern] of [
          [`${dir}/f`, /f: exists and is not a directory/],
          [
            `${dir}/f/run`,
            /f\/run: cannot use it as a run directory: a part of the path is not a directory/,
          ],
          ["", /--out: no directory given/],
          [" ", /--out: no directory given/],
        ] as const
      ) {
        const err = await assertRejects(RunDir.check(path, "new"), UserError);
        assert(pattern.test(err.message), `${path}: ${err.message}`);
        assert(!err.message.includes("\n"), "one line");
      }
    });
  },
);

testWith(
  NEEDS,
  "run_dir: a resumed run's log and diagnostics are trimmed to its checkpoint",
  async () => {
    await inTempDir(async (dir) => {
      const run = await RunDir.open(dir, "new");
      const sinks = await run.sinks(0);
      for (const step of [100, 200, 300]) await sinks.log({ step, loss: 3 - step / 1000, lr: 0.1 });
      await sinks.log({ step: 200, val: 2.9 });
      // The diagnostics are written before the checkpoint: killed in between, they run ahead of
      // it, never behind (which would leave a gap once the run resumed).
      await sinks.save(checkpoint(200), {
        snapshots: [],
        updateRatios: { steps: [100, 200, 300], tensors: [{ name: "w", log10: [-3, -3.1, -3.2] }] },
      });
      run.close();
      const resumed = await RunDir.open(dir, "resume");
      const d = await resumed.readDiagnostics(200);
      assertEquals(d.updateRatios.steps, [100, 200]);
      assertEquals(d.updateRatios.tensors[0].log10, [-3, -3.1]);
      await resumed.sinks(200);
      resumed.close();
      assertEquals((await readLog(dir)).map((e) => e.step), [100, 200, 200]);
    });
  },
);

testWith(NEEDS, "run_dir: reading back a run cut short skips what is broken", async () => {
  await inTempDir(async (dir) => {
    assertEquals(await readLog(dir), []);
    assertEquals(await readDiagnostics(dir), null);
    await Deno.writeTextFile(
      `${dir}/log.jsonl`,
      '{"step":100,"loss":3,"lr":0.1}\n{"step":100,"val":null}\nnot json\n{"step":"x","loss":1,"lr":1}\n{"step":200,"lo',
    );
    assertEquals(await readLog(dir), [{ step: 100, loss: 3, lr: 0.1 }]);
    await Deno.writeTextFile(`${dir}/diagnostics.json`, '{"snapshots": 3}');
    assertEquals(await readDiagnostics(dir), null);
  });
});
