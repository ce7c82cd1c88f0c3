/**
 * The command-line tools end to end, on a small slice of the names data: training, sampling,
 * plotting, stopping and resuming (Ctrl-C, SIGTERM, a second run on the same directory), and one
 * clear line for every kind of bad input, with nothing written.
 */

import names from "../data/names.txt" with { type: "text" };
import { decodeCheckpoint, encodeCheckpoint } from "../src/checkpoint.ts";
import { exists } from "../src/files.ts";
import { PRESETS } from "../src/model.ts";
import {
  assert,
  assertEquals,
  cliCommand,
  type CliResult,
  runCli,
  spawnHeld,
  testWith,
} from "./util.ts";

const small = names.split("\n").slice(0, 400).join("\n") + "\n";
const NEEDS = ["read", "write", "run", "env"] as const;

/** A fresh directory holding the small data file; removed after `fn`. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/names.txt`, small);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SMALL = ["--hidden", "16", "--layers", "2", "--embd", "4"];
const train = (dir: string, out: string, ...args: string[]) =>
  runCli("train.ts", ["--data", `${dir}/names.txt`, "--out", `${dir}/${out}`, ...SMALL, ...args]);
const sample = (...args: string[]) => runCli("sample.ts", args, { permissions: ["--allow-read"] });

function assertOneLineError(r: CliResult, pattern: RegExp): void {
  assert(r.code !== 0, `expected a failure, got exit 0:\n${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(pattern.test(lines[0]), `'${lines[0]}' does not match ${pattern}`);
  assert(!/\bat (file|async|ext):/.test(r.stderr), "no stack trace");
}

/** A training run in the background, held at step `holdAt` (see spawnHeld). */
function startTraining(dir: string, out: string, args: string[], holdAt: number) {
  return spawnHeld("train.ts", [
    "--data",
    `${dir}/names.txt`,
    "--out",
    `${dir}/${out}`,
    ...SMALL,
    ...args,
    "--json",
  ], { holdAt, held: /"event":"held"/ });
}

testWith(NEEDS, "cli train: a checkpoint, run.json and log.jsonl that sample reads", async () => {
  await inTempDir(async (dir) => {
    const r = await train(dir, "run", "--steps", "400", "--eval-every", "200", "--samples", "5");
    assertEquals(r.code, 0, r.stderr);
    assert(/backend: webgpu \(.+\)/.test(r.stdout), r.stdout);
    assert(/loss: train \d\.\d{4} {2}val \d\.\d{4} {2}test \d\.\d{4}/.test(r.stdout), r.stdout);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
    assertEquals(report.steps, 400);
    assertEquals(report.backend, "webgpu");
    // Earned: the untrained model scores ln(27) = 3.30; 400 steps on 400 names reach ~2.6.
    assert(report.losses.train < 2.9 && report.losses.val < 3.0, JSON.stringify(report.losses));
    assertEquals(report.samples.length, 5);
    const log = (await Deno.readTextFile(`${dir}/run/log.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(log.filter((e) => "loss" in e).map((e) => e.step), [100, 200, 300, 400]);
    assertEquals(log.filter((e) => "val" in e).map((e) => e.step), [200]);
    assert(log[3].loss < log[0].loss - 0.3, "the logged loss fell");
    const ck = decodeCheckpoint(await Deno.readFile(`${dir}/run/model.safetensors`), "ck");
    assertEquals(ck.state.step, 400);
    assertEquals(ck.config.nHidden, 16);

    const s = await sample("--out", `${dir}/run`, "--count", "7", "--mark");
    assertEquals(s.code, 0, s.stderr);
    const lines = s.stdout.trim().split("\n");
    assertEquals(lines.length, 7);
    assert(lines.every((l) => /\((new|in the training set)\)$/.test(l)), s.stdout);
    const again = await sample("--out", `${dir}/run`, "--count", "7", "--mark");
    assertEquals(again.stdout, s.stdout, "the same seed gives the same names");
    const other = await sample("--out", `${dir}/run`, "--count", "7", "--seed", "7", "--mark");
    assert(other.stdout !== s.stdout, "another seed gives other names");
    const prefixed = await sample("--out", `${dir}/run`, "--count", "5", "--prefix", "ma");
    assert(prefixed.stdout.trim().split("\n").every((n) => n.startsWith("ma")), prefixed.stdout);
    // Many names come in batches, the first of them the same as when fewer are asked for.
    const many = await sample("--out", `${dir}/run`, "--count", "2500");
    assertEquals(many.stdout.split("\n").length, 2501, "2500 lines");
    // A name is never empty, even where the end token is likely first (a high temperature).
    const hot = await sample("--out", `${dir}/run`, "--count", "2000", "--temperature", "3");
    assert(hot.stdout.trimEnd().split("\n").every((n) => n.length > 0), "no empty name");
    assert(many.stdout.trimEnd().split("\n").every((n) => n.length > 0), "no empty name");
    const few = await sample("--out", `${dir}/run`, "--count", "20");
    assert(many.stdout.startsWith(few.stdout), "batches continue one stream");
    // A reader that stops early (`| head`): the rest is not written, and no error is printed.
    const child = cliCommand("sample.ts", ["--out", `${dir}/run`, "--count", "100000"], {
      permissions: ["--allow-read"],
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read();
    await reader.cancel();
    const status = await child.status;
    const stderr = await new Response(child.stderr).text();
    assertEquals([status.code, stderr], [0, ""]);
  });
});

testWith(
  NEEDS,
  "cli train: Ctrl-C or SIGTERM saves a checkpoint, and --resume ends like an uninterrupted run",
  async () => {
    await inTempDir(async (dir) => {
      // A learning-rate decay mid-way, so the resumed schedule is checked too.
      const args = ["--steps", "2000", "--decay-at", "1300", "--eval-every", "0", "--samples", "3"];
      const whole = await train(dir, "whole", ...args);
      assertEquals(whole.code, 0, whole.stderr);
      const read = (run: string) => Deno.readTextFile(`${dir}/${run}/log.jsonl`);
      const report = async (run: string) => {
        const r = JSON.parse(await Deno.readTextFile(`${dir}/${run}/run.json`));
        return { losses: r.losses, samples: r.samples };
      };
      const params = async (run: string) =>
        decodeCheckpoint(await Deno.readFile(`${dir}/${run}/model.safetensors`), run).params;
      for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
        const out = `cut-${signal}`;
        const running = await startTraining(dir, out, args, 700);
        const { code: exit, stderr } = await running.stop(signal);
        assertEquals(exit, code, stderr);
        const stopped = Number(stderr.match(/interrupted at step (\d+)/)?.[1]);
        assert(stopped >= 700 && stopped < 2000, `stopped at ${stopped}: ${stderr}`);
        const ck = decodeCheckpoint(await Deno.readFile(`${dir}/${out}/model.safetensors`), "ck");
        assertEquals(ck.state.step, stopped);
        // A temporary file left by a killed writer is cleared when the run resumes.
        await Deno.writeTextFile(`${dir}/${out}/model.safetensors.99999.tmp`, "half");
        // Resumed from another working directory: the run remembers its data file absolutely.
        const resumed = await runCli("train.ts", ["--out", `${dir}/${out}`, "--resume"], {
          cwd: "/",
        });
        assertEquals(resumed.code, 0, resumed.stderr);
        assert(resumed.stdout.includes(`resuming from step ${stopped}`), resumed.stdout);
        assert(!(await exists(`${dir}/${out}/model.safetensors.99999.tmp`)), "tmp removed");
        assertEquals(await read(out), await read("whole"));
        assertEquals(await report(out), await report("whole"));
        assertEquals(await params(out), await params("whole"));
      }
    });
  },
);

testWith(
  NEEDS,
  "cli train: an existing run is never overwritten by accident, nor shared by two runs",
  async () => {
    await inTempDir(async (dir) => {
      const first = await train(dir, "run", "--steps", "200", "--samples", "0", "--no-plots");
      assertEquals(first.code, 0, first.stderr);
      const log = await Deno.readTextFile(`${dir}/run/log.jsonl`);
      const ck = await Deno.readFile(`${dir}/run/model.safetensors`);
      // Forgetting --resume: refused before anything is touched.
      assertOneLineError(
        await train(dir, "run", "--steps", "300"),
        /run already holds a run \(.*\): continue it with --resume, replace it with --overwrite/,
      );
      assertEquals(await Deno.readTextFile(`${dir}/run/log.jsonl`), log);
      assertEquals(await Deno.readFile(`${dir}/run/model.safetensors`), ck);
      // A finished run asks for more steps rather than running its finish again.
      assertOneLineError(
        await runCli("train.ts", ["--out", `${dir}/run`, "--resume"]),
        /is finished \(200 steps\); ask for more with --steps/,
      );
      // --overwrite replaces it.
      const again = await train(dir, "run", "--steps", "100", "--samples", "0", "--overwrite");
      assertEquals(again.code, 0, again.stderr);
      assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`)).steps, 100);
      // Two runs on one directory: the second is refused, naming the first's process.
      const running = await startTraining(dir, "shared", ["--steps", "100000"], 1);
      try {
        const second = await train(dir, "shared", "--overwrite", "--steps", "10");
        assertOneLineError(
          second,
          new RegExp(`shared: another run is writing there \\(process ${running.child.pid}, since`),
        );
      } finally {
        assertEquals((await running.stop("SIGINT")).code, 130);
      }
      // The lock of a process that is gone (here: the one just stopped) does not hold.
      const resumed = await runCli("train.ts", [
        "--out",
        `${dir}/shared`,
        "--resume",
        "--steps",
        "1500",
        "--samples",
        "0",
        "--no-plots",
      ]);
      assertEquals(resumed.code, 0, resumed.stderr);
    });
  },
);

testWith(
  NEEDS,
  "cli train: --resume takes the run's own settings again, and names a change",
  async () => {
    await inTempDir(async (dir) => {
      const args = ["--preset", "lecture", "--no-calibrate", "--samples", "0", "--no-plots"];
      assertEquals((await train(dir, "run", ...args, "--steps", "200")).code, 0);
      // The same command again, with more steps and --resume: its preset is the run's own.
      const again = await train(dir, "run", ...args, "--steps", "300", "--resume");
      assertEquals(again.code, 0, again.stderr);
      assert(again.stdout.includes("resuming from step 200"), again.stdout);
      assertOneLineError(
        await train(dir, "run", "--preset", "seed", "--steps", "400", "--resume"),
        /--preset seed is not the run's: the output bias \(--preset, --no-batchnorm\): false \(the run has true\)/,
      );
      assertOneLineError(
        await runCli("train.ts", [
          "--out",
          `${dir}/run`,
          "--resume",
          "--steps",
          "400",
          "--hidden",
          "32",
        ]),
        /the checkpoint cannot continue as asked: --hidden 32 \(the run has 16\)/,
      );
    });
  },
);

testWith(NEEDS, "cli train: a run stopped in its finish resumes to the same end", async () => {
  await inTempDir(async (dir) => {
    const args = ["--steps", "300", "--samples", "3", "--no-plots", "--no-calibrate"];
    const r = await train(dir, "run", ...args);
    assertEquals(r.code, 0, r.stderr);
    const before = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
    // As a kill during the finish leaves it: the checkpoint of the last step, no run.json.
    await Deno.remove(`${dir}/run/run.json`);
    const resumed = await runCli("train.ts", ["--out", `${dir}/run`, "--resume", "--no-plots"]);
    assertEquals(resumed.code, 0, resumed.stderr);
    const after = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
    assertEquals(after.losses, before.losses);
    assertEquals(after.samples, before.samples);
  });
});

testWith(
  NEEDS,
  "cli: bad input gets one line on stderr, a non-zero exit and no output files",
  async () => {
    await inTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/empty.txt`, "");
      await Deno.writeTextFile(`${dir}/few.txt`, small.split("\n").slice(0, 20).join("\n"));
      await Deno.writeFile(`${dir}/binary.txt`, new Uint8Array([0x61, 0, 0x62, 10]));
      await Deno.writeTextFile(`${dir}/file`, "not a directory");
      const huge = await Deno.open(`${dir}/huge.txt`, { write: true, create: true });
      await huge.truncate(65 * 1024 * 1024); // sparse: no disk used
      huge.close();
      const fifo = new Deno.Command("mkfifo", { args: [`${dir}/fifo`] });
      const hasFifo = (await fifo.output().catch(() => ({ success: false }))).success;
      const cases: [string[], RegExp][] = [
        [["--data", `${dir}/missing.txt`], /missing\.txt: no such file/],
        [["--data", `${dir}/empty.txt`], /empty\.txt: the file is empty/],
        [["--data", `${dir}/binary.txt`], /binary\.txt:1: binary content/],
        [["--data", "/dev/zero"], /\/dev\/zero: not a regular file/],
        [["--data", "/dev/urandom"], /\/dev\/urandom: not a regular file/],
        [["--data", `${dir}/huge.txt`], /huge\.txt: 65 MiB, more than the 64 MiB a file may have/],
        [["--data", ""], /no file given \(an empty path\)/],
        ...(hasFifo
          ? [[["--data", `${dir}/fifo`], /fifo: not a regular file/]] as [string[], RegExp][]
          : []),
        [["--frobnicate"], /Unknown option '--frobnicate'/],
        [["--steps", "many"], /--steps must be a whole number, got 'many'/],
        [["--hidden", "0"], /--hidden must be at least 1, got 0/],
        [
          ["--layers", "-2"],
          /--layers needs a value \(a value starting with '-' is written --layers=-1\)/,
        ],
        [["--layers=-2"], /--layers must be at least 1, got -2/],
        [["--batch-size", "1"], /--batch-size must be at least 2/],
        [["--lr", "fast"], /--lr must be a number \(or a ratio such as 5\/3\), got 'fast'/],
        [["--block-size", "1000"], /--block-size must be at most 32/],
        [
          ["--data", `${dir}/few.txt`, "--batch-size", "500"],
          /--batch-size 500 is larger than the training split \(\d+ examples\)/,
        ],
        [
          ["--batch-size", "2000", "--hidden", "2048"],
          /a batch of 2000 rows is more than the software kernels take for this model/,
        ],
        [
          ["--preset", "huge"],
          new RegExp(`--preset must be one of ${Object.keys(PRESETS).join(", ")}, got 'huge'`),
        ],
        [["--backend", "tpu"], /--backend must be one of webgpu, cpu, got 'tpu'/],
        [["--resume"], /--resume: no checkpoint in/],
        [
          ["--resume", "--overwrite"],
          /--resume continues the run in --out; --overwrite replaces it/,
        ],
      ];
      for (const [args, pattern] of cases) {
        const r = await runCli("train.ts", [
          "--data",
          `${dir}/names.txt`,
          "--out",
          `${dir}/bad`,
          ...args,
        ]);
        assertOneLineError(r, pattern);
        assert(!(await exists(`${dir}/bad`)), `${args.join(" ")}: wrote ${dir}/bad`);
      }
      // The output directory is checked first: before the data is read or a GPU opened.
      for (
        const [out, pattern] of [
          [`${dir}/file`, /file: exists and is not a directory/],
          [`${dir}/file/run`, /file\/run: .*a part of the path is not a directory/],
          ["", /--out: no directory given/],
        ] as const
      ) {
        const r = await runCli("train.ts", ["--data", `${dir}/missing.txt`, "--out", out]);
        assertOneLineError(r, pattern);
      }
      // No adapter: the backend list excludes every driver on this machine.
      const none = await runCli(
        "train.ts",
        ["--data", `${dir}/names.txt`, "--out", `${dir}/bad`, "--steps", "5"],
        { permissions: ["--allow-read", "--allow-write"], env: { DENO_WEBGPU_BACKEND: "dx12" } },
      );
      assertOneLineError(none, /no WebGPU adapter found: .*--backend cpu/);
      assert(!(await exists(`${dir}/bad`)));

      // A diverging run stops with the reason and never writes a non-finite checkpoint.
      const nan = await train(
        dir,
        "nan",
        "--steps",
        "300",
        "--lr",
        "1e39",
        "--checkpoint-every",
        "1",
      );
      assertOneLineError(nan, /the (loss|parameters) became .*(too high\?)/);
      assert(!(await exists(`${dir}/nan/model.safetensors`)), "no checkpoint of NaN weights");
      const tiny = await train(dir, "tiny", "--steps", "1", "--lr", "1e30", "--no-plots");
      assertOneLineError(tiny, /the parameters became infinite or NaN/);

      // Checkpoints: a good one, then broken copies of it.
      const ok = await train(dir, "good", "--steps", "100", "--no-calibrate", "--samples", "0");
      assertEquals(ok.code, 0, ok.stderr);
      const good = await Deno.readFile(`${dir}/good/model.safetensors`);
      const resume = (out: string, ...args: string[]) =>
        runCli("train.ts", ["--out", `${dir}/${out}`, "--resume", "--steps", "200", ...args]);
      await Deno.mkdir(`${dir}/trunc`);
      await Deno.writeFile(`${dir}/trunc/model.safetensors`, good.subarray(0, good.length - 100));
      assertOneLineError(
        await resume("trunc"),
        /not a valid checkpoint \(.*outside the file \(truncated\?\)\)/,
      );
      await Deno.mkdir(`${dir}/nanck`);
      const ck = decodeCheckpoint(good, "good");
      ck.params[0] = NaN;
      await Deno.writeFile(`${dir}/nanck/model.safetensors`, encodeCheckpoint(ck));
      assertOneLineError(await resume("nanck"), /holds infinite or NaN values/);
      assertOneLineError(
        await sample("--out", `${dir}/nanck`),
        /holds infinite or NaN values/,
      );
      assertOneLineError(
        await resume("good", "--hidden", "99"),
        /the checkpoint cannot continue as asked: --hidden 99 \(the run has 16\)/,
      );
      await Deno.writeTextFile(`${dir}/other.txt`, "anna\nbob\nzed\n".repeat(50));
      assertOneLineError(
        await resume("good", "--data", `${dir}/other.txt`),
        /other\.txt is not the data the checkpoint was trained on/,
      );
      assertEquals(await Deno.readFile(`${dir}/good/model.safetensors`), good, "left untouched");
      // A run whose data file moved away says how to point at it.
      await Deno.rename(`${dir}/names.txt`, `${dir}/moved.txt`);
      assertOneLineError(
        await resume("good"),
        /--resume: the run's data file .*names\.txt is not there any more; give it with --data/,
      );
      await Deno.rename(`${dir}/moved.txt`, `${dir}/names.txt`);

      // Sampling and plotting.
      assertOneLineError(
        await sample("--out", `${dir}/good`, "--prefix", "Zq"),
        /--prefix: 'Z' is not in the model's vocabulary/,
      );
      assertOneLineError(
        await sample("--out", `${dir}/nowhere`),
        /nowhere\/model\.safetensors: no such checkpoint/,
      );
      assertOneLineError(
        await sample("--checkpoint", `${dir}/trunc/model.safetensors`),
        /not a valid checkpoint/,
      );
      assertOneLineError(
        await sample("--out", `${dir}/good`, "--temperature", "0"),
        /--temperature must be at least/,
      );
      assertOneLineError(
        await sample("--out", `${dir}/good`, "--mark", "--data", `${dir}/other.txt`),
        /--mark: .*other\.txt is not the data this model was trained on/,
      );
      assertOneLineError(
        await runCli("plot.ts", ["--out", `${dir}/nowhere`]),
        /nowhere: no such run directory/,
      );
      // The data tool checks where it writes before it reads anything.
      assertOneLineError(
        await runCli("data.ts", ["--ssa", `${dir}/missing.txt`, "--out", `${dir}/file/names.txt`]),
        /file\/names\.txt: cannot write it: a part of the path is not a directory|not a directory/,
      );
    });
  },
);

testWith(NEEDS, "cli: --help is generated from the flag tables, for every command", async () => {
  const help = await runCli("train.ts", ["--help"]);
  assertEquals(help.code, 0);
  for (
    const flag of [
      "--data FILE",
      "--out DIR",
      "--preset NAME",
      "--steps N",
      "--batch-size N",
      "--lr X",
      "--kernels NAME",
      "--overwrite",
      "--resume",
      "--json",
      "-h, --help",
    ]
  ) {
    assert(help.stdout.includes(flag), `--help mentions ${flag}`);
  }
  assert(help.stdout.includes("(default 10000)"), "defaults are shown");
  for (const tool of ["sample.ts", "plot.ts", "data.ts"]) {
    const r = await runCli(tool, ["--help"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.startsWith("Usage: ") || r.stdout.includes("\nUsage: deno task"), tool);
  }
});

testWith(
  [...NEEDS, "net"],
  "cli lab: a bad address is one line; SIGTERM stops it and removes its temporary site",
  async () => {
    const tmp = await Deno.makeTempDir({ prefix: "makemore-labtmp-" });
    const permissions = [
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-env",
      "--allow-net",
    ];
    try {
      assertOneLineError(
        await runCli("lab.ts", ["--host", "999.1.1.1", "--port", "0"], {
          permissions,
          env: { TMPDIR: tmp },
        }),
        /cannot listen on 999\.1\.1\.1:0: /,
      );
      const child = cliCommand("lab.ts", ["--port", "0"], { permissions, env: { TMPDIR: tmp } })
        .spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!seen.includes("the lab is at")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the lab ended before it served:\n${seen}`);
        seen += value;
      }
      assertEquals((await Array.fromAsync(Deno.readDir(tmp))).length, 1, "its site, while it runs");
      child.kill("SIGTERM");
      while (!(await reader.read()).done) { /* drain */ }
      await child.status;
      await child.stderr.cancel();
      assertEquals(await Array.fromAsync(Deno.readDir(tmp)), [], "nothing left behind");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
