/**
 * The numbers a user types, and their rules, once: the command line's flags
 * (src/cli/train_options.ts, src/cli/sample.ts) take their kind and range from here, and the
 * lab's fields (src/lab/main.ts) are checked by the same rules with the same messages.
 */

import { LIMITS } from "./model.ts";

/** A number's rule: whole or not, and its range. */
export interface NumberRule {
  readonly kind: "int" | "float";
  readonly min?: number;
  readonly max?: number;
}

const int = (r: { min?: number; max?: number }): NumberRule => ({ kind: "int", ...r });
const float = (r: { min?: number; max?: number }): NumberRule => ({ kind: "float", ...r });

export const RULES = {
  blockSize: int(LIMITS.blockSize),
  nEmbd: int(LIMITS.nEmbd),
  nHidden: int(LIMITS.nHidden),
  nLayers: int(LIMITS.nLayers),
  steps: int(LIMITS.steps),
  batchSize: int(LIMITS.batchSize),
  lr: float({ min: Number.MIN_VALUE }),
  lrFinal: float({ min: 0 }),
  decayAt: int({ min: 0 }),
  tanhGain: float({ min: Number.MIN_VALUE, max: 100 }),
  bnMomentum: float({ min: 0, max: 1 }),
  seed: int({ min: 0, max: 0xffffffff }),
  sampleCount: int({ min: 1, max: 1_000_000 }),
  temperature: float({ min: 1e-3, max: 100 }),
  topK: int({ min: 0 }),
} as const satisfies Record<string, NumberRule>;

export type RuleName = keyof typeof RULES;

/**
 * A number from what was typed, by its rule; or what is wrong with it, as the rest of a sentence
 * that starts with the field's name ("must be a whole number, got '2.5'"). A ratio ("5/3", as
 * --help shows some defaults) is a number.
 */
export function parseNumber(rule: NumberRule, raw: string): number | { error: string } {
  const text = raw.trim();
  const ratio = /^([^/]+)\/([^/]+)$/.exec(text);
  const v = ratio ? Number(ratio[1]) / Number(ratio[2]) : Number(text);
  if (rule.kind === "int" && (text === "" || !Number.isInteger(v))) {
    return { error: `must be a whole number, got '${raw}'` };
  }
  if (text === "" || !Number.isFinite(v)) {
    return { error: `must be a number (or a ratio such as 5/3), got '${raw}'` };
  }
  if (rule.min !== undefined && v < rule.min) {
    return { error: `must be at least ${rule.min}, got ${v}` };
  }
  if (rule.max !== undefined && v > rule.max) {
    return { error: `must be at most ${rule.max}, got ${v}` };
  }
  return v;
}
