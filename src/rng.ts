/**
 * A seeded pseudo-random generator, so that a run is reproducible from its seed on any machine.
 *
 * Algorithm: xoshiro128** 1.1 (Blackman and Vigna, 2018), 128 bits of state in four uint32
 * words, seeded by expanding the 32-bit seed with SplitMix32 (the 32-bit variant of Steele et
 * al.'s SplitMix). Everything is done in 32-bit integer arithmetic (`Math.imul`, `>>>`), which
 * JavaScript defines exactly, so the integer stream is the same on every platform. The
 * derived distributions:
 *
 * - `uint32()`: the next raw output.
 * - `uniform()`: `uint32() / 2^32`, in [0, 1), 32 bits of resolution.
 * - `normal()`: Box-Muller with one pair of uniforms per draw (the sine half is discarded, so
 *   the generator state is all there is to save for a resume).
 * - `randint(n)`: uniform over [0, n), unbiased: draws above the largest multiple of n below
 *   2^32 are rejected and drawn again.
 */

export type RngState = [number, number, number, number];

export class Rng {
  #s = new Uint32Array(4);

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
    }
    // SplitMix32 expands the seed; it never yields four zero words, which xoshiro forbids.
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let x = z;
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
      this.#s[i] = (x ^ (x >>> 16)) >>> 0;
    }
  }

  /** Restores a generator from `state()`. */
  static fromState(state: RngState): Rng {
    if (state.length !== 4 || state.every((w) => w === 0)) {
      throw new RangeError("rng state must be four uint32 words, not all zero");
    }
    const r = new Rng(0);
    for (let i = 0; i < 4; i++) r.#s[i] = state[i] >>> 0;
    return r;
  }

  state(): RngState {
    const s = this.#s;
    return [s[0], s[1], s[2], s[3]];
  }

  uint32(): number {
    const s = this.#s;
    const x = Math.imul(s[1], 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return result;
  }

  uniform(): number {
    return this.uint32() / 4294967296;
  }

  normal(): number {
    const u1 = 1 - this.uniform(); // (0, 1]: log never sees 0
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  randint(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) {
      throw new RangeError(`randint bound must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = 4294967296 - (4294967296 % n);
    let x = this.uint32();
    while (x >= limit) x = this.uint32();
    return x % n;
  }

  /** Fisher-Yates, in place, front to back. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.randint(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }
}
