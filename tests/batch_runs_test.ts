/**
 * Sweeps and experiments under real use (issue #20): a rerun reuses a run only when it is the run
 * asked for; a stop by any signal leaves no run going; failed runs are tried again; a second
 * sweep in the same directory is refused; bad output paths and missing data are one line, before
 * any run. Runs are held at a step (MAKEMORE_HOLD_AT_STEP) where a test must find them running.
 */

import { FAILED_FILE } from "../src/batch_runs.ts";
import { decodeCheckpoint } from "../src/checkpoint.ts";
import { exists } from "../src/files.ts";
import { checkLock } from "../src/run_dir.ts";
import { assert, assertEquals, runCli, spawnHeld, testWith } from "./util.ts";
import { ALL, inTempDir, lectureOn, NEEDS, oneLineError, tiny, tool } from "./cli_batch.ts";

const statuses = async (dir: string) =>
  JSON.parse(await Deno.readTextFile(`${dir}/sweep.json`)).rows.map((r: { status: string }) =>
    r.status
  );

/** The flags of a lecture sweep into DIR/s over DIR/names.txt, then `flags`. */
const lectureSweep = (dir: string, ...flags: string[]) => [
  "--out",
  `${dir}/s`,
  ...lectureOn(dir, ...flags),
];

/** A sweep in the background whose runs hold at step 1; resolves once one of them holds. */
const heldSweep = (args: string[]) =>
  // The sweep says so when its run holds (the hook's "held" event).
  spawnHeld("sweep.ts", args, { holdAt: 1, held: /holds at step \d+/, permissions: ALL });

testWith(
  NEEDS,
  "batch runs: a finished run is reused only if it is the run asked for",
  async () => {
    await inTempDir(async (dir) => {
      const base = lectureSweep(dir);
      const grid = ["--hidden", "8,16", "--samples", "0", "--eval-every", "0"];
      const first = await tool("sweep.ts", [...base, ...grid, "--steps", "20"]);
      assertEquals(first.code, 0, first.stderr);
      const ck = await Deno.readFile(`${dir}/s/runs/hidden=8/model.safetensors`);
      // Other fixed flags: refused before any run, naming the flag and both values.
      const other = await tool("sweep.ts", [...base, ...grid, "--steps", "30", "--embd", "4"]);
      oneLineError(other, /s\/runs\/hidden=8 holds another run .*--embd 4 \(the run has 10\)/);
      assertEquals(await Deno.readFile(`${dir}/s/runs/hidden=8/model.safetensors`), ck);
      // --redo trains them again with the new settings.
      const redo = await tool("sweep.ts", [...base, ...grid, "--steps", "30", "--redo"]);
      assertEquals(redo.code, 0, redo.stderr);
      assertEquals(await statuses(`${dir}/s`), ["finished", "finished"]);
      const report = JSON.parse(await Deno.readTextFile(`${dir}/s/runs/hidden=16/run.json`));
      assertEquals(report.steps, 30);
      // The same again: skipped.
      const same = await tool("sweep.ts", [...base, ...grid, "--steps", "30"]);
      assertEquals(same.code, 0, same.stderr);
      assertEquals(await statuses(`${dir}/s`), ["skipped", "skipped"]);
      // Other data is another run too.
      await Deno.writeTextFile(`${dir}/other.txt`, tiny.split("\n").slice(0, 300).join("\n"));
      const data = await tool("sweep.ts", [
        ...base,
        ...grid,
        "--steps",
        "30",
        "--data",
        `${dir}/other.txt`,
      ]);
      oneLineError(data, /holds another run .*--data: another file/);
      // Merged runs may not replace a sweep's own report.
      oneLineError(
        await tool("sweep.ts", ["--collect", "--out", `${dir}/s`, `${dir}/s`]),
        /--out .*s holds a sweep of its own/,
      );
      // An experiment asked for another number of steps than it ran: refused the same way.
      const study = ["lr", "--data", `${dir}/names.txt`, "--out", `${dir}/e`];
      assertEquals((await tool("experiment.ts", [...study, "--steps", "5"])).code, 0);
      oneLineError(
        await tool("experiment.ts", [...study, "--steps", "8"]),
        /e\/runs\/lr-0\.01 holds another run .*--steps 8 \(the run has 5\).* --redo/,
      );
    });
  },
);

testWith(
  NEEDS,
  "batch runs: SIGTERM and SIGHUP stop the runs with a checkpoint; the rerun goes on",
  async () => {
    await inTempDir(async (dir) => {
      const args = lectureSweep(dir, "--hidden", "8,16", "--steps", "300", "--samples", "0");
      for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
        const sweep = await heldSweep(args);
        const stopped = await sweep.stop(signal);
        assertEquals(stopped.code, code, stopped.stderr);
        // The held run saved its checkpoint, unfinished (the second time it stops after the
        // chunks in flight, at the end), and is gone: nothing holds its directory.
        const run = `${dir}/s/runs/hidden=8`;
        const ck = decodeCheckpoint(await Deno.readFile(`${run}/model.safetensors`), run);
        assert(ck.state.step >= 1, `step ${ck.state.step}`);
        assert(!(await exists(`${run}/run.json`)), "not finished");
        await checkLock(run);
      }
      const rerun = await tool("sweep.ts", args);
      assertEquals(rerun.code, 0, rerun.stderr);
      assertEquals(await statuses(`${dir}/s`), ["finished", "finished"]);
    });
  },
);

testWith(
  NEEDS,
  "batch runs: failed runs are tried again, or skipped with --skip-failed",
  async () => {
    await inTempDir(async (dir) => {
      const base = lectureSweep(dir);
      const args = [...base, "--lr", "0.1,1e6", "--steps", "40", "--samples", "0"];
      // A run killed before its first checkpoint left only its log.
      await Deno.mkdir(`${dir}/s/runs/lr=0.1`, { recursive: true });
      await Deno.writeTextFile(
        `${dir}/s/runs/lr=0.1/log.jsonl`,
        '{"step":100,"loss":2,"lr":0.1}\n',
      );
      const first = await tool("sweep.ts", args);
      assertEquals(first.code, 1, first.stderr); // lr 1e6 diverges
      assertEquals(await statuses(`${dir}/s`), ["finished", "failed"]);
      assert(await exists(`${dir}/s/runs/lr=1e6/${FAILED_FILE}`), "the failure is recorded");
      // Run again: the failed run is tried again (and fails again), not refused.
      const again = await tool("sweep.ts", args);
      assertEquals(again.code, 1, again.stderr);
      assert(/run lr=1e6 failed: .*(loss became|infinite or NaN)/.test(again.stderr), again.stderr);
      assertEquals(await statuses(`${dir}/s`), ["skipped", "failed"]);
      const skipped = await tool("sweep.ts", [...args, "--skip-failed"]);
      assertEquals(skipped.code, 1, skipped.stderr);
      assert(/run lr=1e6 failed: /.test(skipped.stderr), skipped.stderr);
    });
  },
);

testWith(
  NEEDS,
  "batch runs: a second sweep in the same directory is refused, naming the first",
  async () => {
    await inTempDir(async (dir) => {
      const args = lectureSweep(dir, "--hidden", "8,16", "--steps", "300");
      const first = await heldSweep(args);
      try {
        oneLineError(
          await tool("sweep.ts", args),
          new RegExp(
            `s: another sweep or experiment is writing there \\(process ${first.child.pid}`,
          ),
        );
      } finally {
        assertEquals((await first.stop("SIGINT")).code, 130);
      }
    });
  },
);

testWith(NEEDS, "lr-find: a range that holds no answer says which way to widen it", async () => {
  await inTempDir(async (dir) => {
    const r = await runCli("lr_find.ts", [
      "--data",
      `${dir}/names.txt`,
      "--out",
      `${dir}/lr`,
      "--preset",
      "lecture",
      "--lr-min",
      "100",
      "--lr-max",
      "1000",
      "--steps",
      "100",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const rows = r.stdout.split("\n").filter((l) => /^\s+\d\.\d+e[+-]\d+\s/.test(l));
    assertEquals(new Set(rows).size, rows.length, `each row once:\n${r.stdout}`);
    assert(/no suggestion: .*widen it down \(a smaller --lr-min\)/.test(r.stdout), r.stdout);
  });
});

testWith(
  NEEDS,
  "batch runs: paths as values, missing data and bad --out get one line before any run",
  async () => {
    await inTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/a`);
      await Deno.mkdir(`${dir}/b`);
      await Deno.writeTextFile(`${dir}/a/x.txt`, tiny);
      await Deno.writeTextFile(`${dir}/b/y.txt`, tiny.split("\n").slice(0, 300).join("\n"));
      const printed = await tool("sweep.ts", [
        "--out",
        `${dir}/s`,
        "--data",
        `${dir}/a/x.txt,${dir}/b/y.txt`,
        "--gain",
        "5/3,1",
        "--print-commands",
      ]);
      assertEquals(printed.code, 0, printed.stderr);
      assertEquals(printed.stdout.trim().split("\n").length, 4);
      assert(printed.stdout.includes(`--data=${dir}/a/x.txt`), printed.stdout);
      const missing = ["--out", `${dir}/m`, "--data", `${dir}/none.txt`, "--hidden", "8,16"];
      oneLineError(await tool("sweep.ts", missing), /none\.txt: no such data file/);
      assert(!(await exists(`${dir}/m/runs`)), "nothing started");
      await Deno.writeTextFile(`${dir}/file`, "not a directory");
      oneLineError(
        await tool("sweep.ts", ["--collect", "--out", `${dir}/file`, `${dir}/s`]),
        /file: exists and is not a directory|no runs in/,
      );
      oneLineError(
        await runCli("lr_find.ts", ["--out", `${dir}/file`, "--data", `${dir}/names.txt`]),
        /file: exists and is not a directory/,
      );
      oneLineError(
        await tool("experiment.ts", [
          "lr",
          "--steps",
          "2",
          "--data",
          `${dir}/names.txt`,
          "--out",
          `${dir}/file`,
        ]),
        /file: exists and is not a directory/,
      );
    });
  },
);
