import { assert, assertEquals, assertThrows } from "./util.ts";
import { Rng } from "../src/rng.ts";

Deno.test("rng: matches the xoshiro128** 1.1 reference stream for seed 42", () => {
  // From the authors' C reference (xoshiro128starstar.c) seeded with the same SplitMix32 words.
  const r = new Rng(42);
  const got = Array.from({ length: 6 }, () => r.uint32());
  assertEquals(got, [2837322924, 544945897, 479756282, 3500138142, 339756180, 113173290]);
});

Deno.test("rng: same seed, same stream; state round-trips", () => {
  const a = new Rng(7);
  const b = new Rng(7);
  for (let i = 0; i < 100; i++) assertEquals(a.uint32(), b.uint32());
  const c = Rng.fromState(a.state());
  for (let i = 0; i < 100; i++) assertEquals(a.normal(), c.normal());
  assert(new Rng(8).uint32() !== new Rng(7).uint32());
});

Deno.test("rng: uniform in [0, 1), normal has mean 0 and std 1", () => {
  const r = new Rng(1);
  const n = 200_000;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    assert(u >= 0 && u < 1);
    const z = r.normal();
    sum += z;
    sumSq += z * z;
  }
  const mean = sum / n;
  const std = Math.sqrt(sumSq / n - mean * mean);
  // Standard errors: 1/sqrt(n) ~ 0.0022 for the mean, ~0.0016 for the std; 4 sigma bounds.
  assert(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert(Math.abs(std - 1) < 0.007, `std ${std}`);
});

Deno.test("rng: randint is in range and roughly uniform; bad bounds throw", () => {
  const r = new Rng(3);
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 70_000; i++) counts[r.randint(7)]++;
  for (const c of counts) assert(Math.abs(c - 10_000) < 500, `counts ${counts}`);
  assertThrows(() => r.randint(0));
  assertThrows(() => r.randint(2.5));
  assertThrows(() => new Rng(-1));
  assertThrows(() => Rng.fromState([0, 0, 0, 0]));
});

Deno.test("rng: shuffle is a permutation and depends on the seed", () => {
  const items = Array.from({ length: 50 }, (_, i) => i);
  const a = new Rng(5).shuffle([...items]);
  assertEquals([...a].sort((x, y) => x - y), items);
  assertEquals(new Rng(5).shuffle([...items]), a);
  assert(new Rng(6).shuffle([...items]).join() !== a.join());
});
