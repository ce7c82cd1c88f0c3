/**
 * The checkpoint in PyTorch (bench/pytorch_checkpoint.py): torch.nn.Sequential built from the
 * layers in a checkpoint's metadata gives the loss this project's reference gives it, over every
 * example of a file, for makemore part 3's MLP and for a hierarchical network with a ReLU.
 * Needs python3 with torch (Debian: apt-get install python3-torch; .ci/run installs it).
 */

import names from "../data/names.txt" with { type: "text" };
import { decodeCheckpoint } from "../src/checkpoint.ts";
import { CpuModel } from "../src/cpu/model.ts";
import { buildExamples, parseWords, Vocab } from "../src/data.ts";
import { assert, assertEquals, runCli } from "./util.ts";

const granted = (["read", "write", "run", "env"] as const).every((name) =>
  Deno.permissions.querySync({ name }).state === "granted"
);

/** The first python3 that imports torch (Debian's is /usr/bin/python3), or null. */
function python(): string | null {
  if (!granted) return null;
  for (const exe of ["python3", "/usr/bin/python3"]) {
    try {
      const ok =
        new Deno.Command(exe, { args: ["-c", "import torch"], stdout: "null", stderr: "null" })
          .outputSync().success;
      if (ok) return exe;
    } catch { /* not there */ }
  }
  return null;
}

const exe = python();

Deno.test({
  name: "pytorch: a checkpoint re-evaluates in torch.nn.Sequential to the reference's loss" +
    (exe
      ? ""
      : granted
      ? " [ignored: needs python3 with torch: apt-get install python3-torch]"
      : " [skipped: needs --allow-read, --allow-write, --allow-run, --allow-env; run `deno task test`]"),
  ignore: !exe,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "makemore-torch-" });
    try {
      const data = `${dir}/names.txt`;
      await Deno.writeTextFile(data, names.split("\n").slice(0, 400).join("\n") + "\n");
      const runs: [string, string[]][] = [
        ["lecture", ["--preset", "lecture"]],
        ["hierarchical", [
          "--network",
          "Embedding(6) FlattenConsecutive(2) Linear(16, bias=False) BatchNorm1d Tanh " +
          "FlattenConsecutive(2) Linear(12) ReLU Linear",
          "--block-size",
          "4",
        ]],
      ];
      for (const [name, args] of runs) {
        const out = `${dir}/${name}`;
        const r = await runCli("train.ts", [
          ...args,
          "--data",
          data,
          "--out",
          out,
          "--steps",
          "200",
          "--samples",
          "0",
          "--no-plots",
        ]);
        assertEquals(r.code, 0, r.stderr);
        const ckPath = `${out}/model.safetensors`;
        const ck = decodeCheckpoint(await Deno.readFile(ckPath), ckPath);
        const words = parseWords(await Deno.readFile(data), data);
        const ex = buildExamples(words, new Vocab(ck.vocab), ck.config.blockSize);
        const ours = new CpuModel(
          ck.config,
          Float64Array.from(ck.params),
          Float64Array.from(ck.buffers),
        )
          .evaluate(ex);
        const py = await new Deno.Command(exe!, {
          args: [new URL("../bench/pytorch_checkpoint.py", import.meta.url).pathname, ckPath, data],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(py.stdout);
        assert(py.success, new TextDecoder().decode(py.stderr));
        const torch = JSON.parse(text.trim().split("\n").at(-1)!);
        assertEquals(torch.examples, ex.n);
        // float32 in PyTorch against the reference in float64: a few 1e-7 apart.
        assert(
          Math.abs(torch.loss - ours) <= 1e-4 * ours,
          `${name}: torch ${torch.loss}, ours ${ours}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
