import names from "../data/names.txt" with { type: "text" };
import {
  buildExamples,
  makeDataset,
  MAX_WORD_CHARS,
  parseWords,
  sha256Hex,
  splitWords,
  Vocab,
} from "../src/data.ts";
import { UserError } from "../src/errors.ts";
import { readWords } from "../src/files.ts";
import { assert, assertEquals, assertThrows, testWith } from "./util.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("data: the committed names.txt is the documented file", async () => {
  const bytes = new TextEncoder().encode(names); // ASCII: the file's own bytes
  assertEquals(bytes.length, 229_804);
  assertEquals(
    await sha256Hex(bytes),
    "bd02dfd33179e23ec2dd093cbd4de619834f75d660ef1ae04d3127e7a0110053",
  );
  const words = parseWords(bytes, "names.txt");
  assertEquals(words.length, 32_257);
  assertEquals(words.slice(0, 3), ["emma", "olivia", "ava"]);
  assertEquals(Vocab.fromWords(words).chars.join(""), ".abcdefghijklmnopqrstuvwxyz");
});

Deno.test("data: blank lines and surrounding whitespace are skipped, CRLF and BOM too", () => {
  const words = parseWords(enc("\uFEFFann\r\n\n  bob \t\n\r\n cy\n"), "f");
  assertEquals(words, ["ann", "bob", "cy"]);
});

Deno.test("data: non-ASCII characters join the vocabulary, sorted by code point", () => {
  const words = parseWords(enc("zoë\nchloé\nanna\n𝒜b\n"), "f");
  const vocab = Vocab.fromWords(words);
  assertEquals(vocab.chars, [".", "a", "b", "c", "h", "l", "n", "o", "z", "é", "ë", "𝒜"]);
  assertEquals(vocab.decode(vocab.encode("𝒜b")), "𝒜b");
  assertEquals(vocab.encode("𝒜b").length, 2);
});

function assertUserError(fn: () => unknown, pattern: RegExp): void {
  const err = assertThrows(fn, UserError);
  assert(pattern.test(err.message), `message '${err.message}' does not match ${pattern}`);
  assert(!err.message.includes("\n"), "the message must be one line");
}

Deno.test("data: bad input gets a one-line error naming the file and line", () => {
  assertUserError(() => parseWords(enc(""), "e.txt"), /^e\.txt: the file is empty/);
  assertUserError(() => parseWords(enc("\n \n\t\n"), "b.txt"), /^b\.txt: no usable lines/);
  assertUserError(() => parseWords(enc("ab\ncd\x00ef\n"), "n.txt"), /^n\.txt:2: binary/);
  assertUserError(
    () => parseWords(new Uint8Array([0x61, 0xff, 0xfe, 0x0a]), "u.txt"),
    /^u\.txt: not valid UTF-8/,
  );
  assertUserError(
    () => parseWords(enc("ann\nj.r.\n"), "d.txt"),
    /^d\.txt:2: 'j\.r\.' contains '\.'/,
  );
  assertUserError(
    () => parseWords(enc("ok\n" + "x".repeat(MAX_WORD_CHARS + 1) + "\n"), "l.txt"),
    /^l\.txt:2: line of 257 characters/,
  );
  assertUserError(
    () => parseWords(enc("a\x07b\n"), "c.txt"),
    /^c\.txt:1: control character U\+0007/,
  );
  assertThrows(() => Vocab.fromWords(["ab"]).encode("abc"), UserError);
});

testWith(
  ["read"],
  "files: a words file that is missing, a directory or a device gets one line",
  async () => {
    for (
      const [path, pattern] of [
        ["/nonexistent/names.txt", /^\/nonexistent\/names\.txt: no such file$/],
        ["/tmp", /^\/tmp: is a directory, expected a file$/],
        ["/dev/zero", /^\/dev\/zero: not a regular file \(a device, FIFO or socket\)/],
        ["", /^no file given \(an empty path\)$/],
      ] as const
    ) {
      const err = await readWords(path).then(() => null, (e) => e);
      assert(err instanceof UserError && pattern.test(err.message), `${path}: ${err}`);
    }
  },
);

Deno.test("data: examples are the previous blockSize tokens, '.'-padded, then the end token", () => {
  const vocab = Vocab.fromWords(["emma", "ab"]);
  assertEquals(vocab.chars.join(""), ".abem");
  const ex = buildExamples(["emma", "ab"], vocab, 3);
  assertEquals(ex.n, 5 + 3);
  const rows = Array.from(
    { length: ex.n },
    (_, i) => vocab.decode(ex.x.subarray(3 * i, 3 * i + 3)) + ">" + vocab.chars[ex.y[i]],
  );
  assertEquals(rows, ["...>e", "..e>m", ".em>m", "emm>a", "mma>.", "...>a", "..a>b", ".ab>."]);
  const ex1 = buildExamples(["ab"], vocab, 1);
  assertEquals(Array.from(ex1.x), [0, 1, 2]);
  assertEquals(Array.from(ex1.y), [1, 2, 0]);
});

Deno.test("data: the split is 80/10/10 of the words, disjoint, complete, seeded", () => {
  // Distinct words: i written in base 26 with the letters a-z as digits.
  const letters = (i: number): string =>
    (i >= 26 ? letters(Math.floor(i / 26)) : "") + String.fromCharCode(97 + (i % 26));
  const words = Array.from({ length: 1003 }, (_, i) => letters(i));
  assertEquals(new Set(words).size, words.length);
  const s = splitWords(words, 42);
  assertEquals([s.train.length, s.val.length, s.test.length], [802, 100, 101]);
  const all = [...s.train, ...s.val, ...s.test];
  assertEquals(new Set(all).size, words.length);
  assertEquals([...all].sort(), [...words].sort());
  assertEquals(splitWords(words, 42), s);
  assert(splitWords(words, 43).train.join() !== s.train.join());
  assert(s.train.slice(0, 20).join() !== words.slice(0, 20).join(), "the words are shuffled");
});

Deno.test("data: a dataset's examples cover each split's words", () => {
  const words = ["anna", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ida", "jo"];
  const ds = makeDataset(words, 3, 1);
  const count = (ws: string[]) => ws.reduce((n, w) => n + w.length + 1, 0);
  assertEquals(ds.examples.train.n, count(ds.splitWords.train));
  assertEquals(ds.examples.val.n, count(ds.splitWords.val));
  assertEquals(ds.examples.test.n, count(ds.splitWords.test));
  assertEquals(ds.vocab.size, 1 + new Set(words.join("")).size);
});
