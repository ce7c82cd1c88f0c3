/**
 * The dataset: a text file of one item per line (makemore's convention), its character
 * vocabulary, (context -> next character) examples, and the seeded 80/10/10 split.
 *
 * Token 0 is '.', which marks both the start (as padding of the context) and the end of a
 * word; the other tokens are the distinct characters of the file sorted by code point.
 */

import { UserError } from "./errors.ts";
import { Rng } from "./rng.ts";

/** The start/end token; it may not appear inside a word. */
export const BOUNDARY = ".";
/** Longer lines are not names; they are almost always the wrong file. */
export const MAX_WORD_CHARS = 256;

/** Parses the file's bytes into words, validating as it goes. `name` is used in errors. */
export function parseWords(bytes: Uint8Array, name: string): string[] {
  if (bytes.length === 0) throw new UserError(`${name}: the file is empty`);
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    const line = countNewlines(bytes, nul) + 1;
    throw new UserError(`${name}:${line}: binary content (a NUL byte), expected text`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${name}: not valid UTF-8 text (is it a binary file?)`);
  }
  const words: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const word = lines[i].trim();
    if (word === "") continue;
    const where = `${name}:${i + 1}`;
    const chars = Array.from(word);
    if (chars.length > MAX_WORD_CHARS) {
      throw new UserError(
        `${where}: line of ${chars.length} characters; items longer than ${MAX_WORD_CHARS} ` +
          `are not supported (is this one item per line?)`,
      );
    }
    for (const ch of chars) {
      if (ch === BOUNDARY) {
        throw new UserError(
          `${where}: '${word}' contains '.', which is reserved as the start/end token`,
        );
      }
      const cp = ch.codePointAt(0)!;
      if ((cp < 0x20 && ch !== "\t") || cp === 0x7f) {
        const hex = cp.toString(16).toUpperCase().padStart(4, "0");
        throw new UserError(`${where}: control character U+${hex}, expected text`);
      }
    }
    words.push(word);
  }
  if (words.length === 0) throw new UserError(`${name}: no usable lines (only blank lines)`);
  return words;
}

function countNewlines(bytes: Uint8Array, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) if (bytes[i] === 10) n++;
  return n;
}

/** The hex sha256 of the data's bytes: a resumed run must train on the same ones. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The vocabulary: `chars[0]` is '.', then the distinct characters by code point. */
export class Vocab {
  readonly chars: readonly string[];
  readonly #index: Map<string, number>;

  constructor(chars: readonly string[]) {
    if (chars[0] !== BOUNDARY) throw new Error("vocabulary must start with '.'");
    if (new Set(chars).size !== chars.length) throw new Error("vocabulary has duplicates");
    this.chars = chars;
    this.#index = new Map(chars.map((c, i) => [c, i]));
  }

  static fromWords(words: readonly string[]): Vocab {
    const set = new Set<string>();
    for (const w of words) for (const ch of w) set.add(ch);
    const sorted = [...set].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    return new Vocab([BOUNDARY, ...sorted]);
  }

  get size(): number {
    return this.chars.length;
  }

  has(ch: string): boolean {
    return this.#index.has(ch);
  }

  /** Token ids of a word's characters; throws on a character outside the vocabulary. */
  encode(word: string): number[] {
    return Array.from(word, (ch) => {
      const id = this.#index.get(ch);
      if (id === undefined) throw new UserError(`character '${ch}' is not in the vocabulary`);
      return id;
    });
  }

  decode(ids: Iterable<number>): string {
    let s = "";
    for (const id of ids) s += this.chars[id];
    return s;
  }
}

/** (context -> next token) pairs: `x` is [n, blockSize] row-major, `y` is [n]. */
export interface Examples {
  readonly x: Int32Array;
  readonly y: Int32Array;
  readonly n: number;
  readonly blockSize: number;
}

/**
 * One example per character of each word plus one for the end token. The context holds the
 * previous `blockSize` tokens, oldest first, padded on the left with '.'.
 */
export function buildExamples(words: readonly string[], vocab: Vocab, blockSize: number): Examples {
  let n = 0;
  for (const w of words) n += Array.from(w).length + 1;
  const x = new Int32Array(n * blockSize);
  const y = new Int32Array(n);
  const context = new Int32Array(blockSize);
  let row = 0;
  for (const w of words) {
    context.fill(0);
    for (const id of [...vocab.encode(w), 0]) {
      x.set(context, row * blockSize);
      y[row++] = id;
      context.copyWithin(0, 1);
      context[blockSize - 1] = id;
    }
  }
  return { x, y, n, blockSize };
}

export interface Split<T> {
  readonly train: T;
  readonly val: T;
  readonly test: T;
}

/**
 * Shuffles a copy of the words with the seeded generator and cuts it 80/10/10 at
 * floor(0.8 n) and floor(0.9 n), as makemore does.
 */
export function splitWords(words: readonly string[], seed: number): Split<string[]> {
  const shuffled = new Rng(seed).shuffle([...words]);
  const n1 = Math.floor(0.8 * shuffled.length);
  const n2 = Math.floor(0.9 * shuffled.length);
  return {
    train: shuffled.slice(0, n1),
    val: shuffled.slice(n1, n2),
    test: shuffled.slice(n2),
  };
}

/** Everything the trainer needs from a words file. */
export interface Dataset {
  readonly words: readonly string[];
  readonly vocab: Vocab;
  readonly splitWords: Split<string[]>;
  readonly examples: Split<Examples>;
}

export function makeDataset(
  words: readonly string[],
  blockSize: number,
  seed: number,
  vocab: Vocab = Vocab.fromWords(words),
): Dataset {
  const split = splitWords(words, seed);
  return {
    words,
    vocab,
    splitWords: split,
    examples: {
      train: buildExamples(split.train, vocab, blockSize),
      val: buildExamples(split.val, vocab, blockSize),
      test: buildExamples(split.test, vocab, blockSize),
    },
  };
}
