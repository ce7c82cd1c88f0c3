/**
 * Command-line flags, declared once: each flag's name, type, range, default and help line
 * live in one table per command, and both the parser (node:util's parseArgs, strict) and the
 * --help text are generated from it, so the two cannot drift.
 */

import { parseArgs } from "node:util";
import { parseNumber } from "../settings.ts";

/** A bad flag or flag value: one line on stderr, exit code 2 (src/cli/common.ts). */
export class UsageError extends Error {}

interface Base {
  readonly help: string;
  /** A default that --help shows but the parser does not apply (it comes from a preset). */
  readonly shown?: string;
  readonly short?: string;
}

export type Flag =
  | Base & {
    readonly kind: "int" | "float";
    readonly arg: string;
    readonly min?: number;
    readonly max?: number;
    /** Applied when the flag is absent, and shown by --help. */
    readonly default?: number;
  }
  | Base & { readonly kind: "string"; readonly arg: string; readonly default?: string }
  | Base & {
    readonly kind: "choice";
    readonly arg: string;
    readonly choices: readonly string[];
    readonly default?: string;
  }
  | Base & { readonly kind: "bool" };

/** The groups of a command's flags, in --help order: a title, then its flags by name. */
export type FlagGroups = Readonly<Record<string, Readonly<Record<string, Flag>>>>;

type ValueOf<F extends Flag> = F extends { kind: "int" | "float" } ? number
  : F extends { kind: "bool" } ? boolean
  : string;

type Flatten<G extends FlagGroups> = {
  [K in { [T in keyof G]: keyof G[T] }[keyof G] & string]: {
    [T in keyof G]: K extends keyof G[T] ? G[T][K] : never;
  }[keyof G];
};

type Defaulted<F> = F extends { default: unknown } ? true : F extends { kind: "bool" } ? true
: false;

/**
 * Parsed values. A flag with a default always has a value (a bool flag is false when absent);
 * one without is undefined when not given, so that a preset's value can apply.
 */
export type Values<G extends FlagGroups> =
  & {
    readonly [K in keyof Flatten<G> as Defaulted<Flatten<G>[K]> extends true ? K : never]:
      Flatten<G>[K] extends Flag ? ValueOf<Flatten<G>[K]> : never;
  }
  & {
    readonly [K in keyof Flatten<G> as Defaulted<Flatten<G>[K]> extends true ? never : K]?:
      Flatten<G>[K] extends Flag ? ValueOf<Flatten<G>[K]> : never;
  };

export interface Command<G extends FlagGroups> {
  readonly groups: G;
  help(): string;
  /** Parses argv; a UsageError names the flag and what is wrong with its value. */
  parse(
    args: readonly string[],
  ): { values: Values<G> & { readonly help?: boolean }; positionals: string[] };
}

/** One flag's value from its text. */
export function parseValue(name: string, f: Flag, raw: string): number | string {
  const text = raw.trim();
  switch (f.kind) {
    case "int":
    case "float": {
      const v = parseNumber(f, raw);
      if (typeof v !== "number") throw new UsageError(`--${name} ${v.error}`);
      return v;
    }
    case "choice":
      if (!f.choices.includes(text)) {
        throw new UsageError(`--${name} must be one of ${f.choices.join(", ")}, got '${raw}'`);
      }
      return text;
    default:
      return raw;
  }
}

/** The flags of all groups, by name. */
export function flagsOf(groups: FlagGroups): Record<string, Flag> {
  return Object.assign({}, ...Object.values(groups));
}

export function defineCommand<G extends FlagGroups>(spec: {
  /** One sentence: what the command does. */
  readonly summary: string;
  readonly usage: string;
  readonly groups: G;
  /** Paragraphs after the flags. */
  readonly notes?: string;
  /** Positional arguments are accepted (their meaning goes in `usage`). */
  readonly positionals?: boolean;
}): Command<G> {
  const flags = flagsOf(spec.groups);
  return {
    groups: spec.groups,
    help() {
      const left = (name: string, f: Flag) =>
        `  ${f.short ? `-${f.short}, ` : ""}--${name}${"arg" in f ? ` ${f.arg}` : ""}`;
      const width = Math.max(...Object.entries(flags).map(([n, f]) => left(n, f).length)) + 2;
      const wrap = (text: string) => {
        const words = text.split(" ");
        const lines: string[] = [];
        let line = "";
        for (const w of words) {
          if (line && width + line.length + 1 + w.length > 100) {
            lines.push(line);
            line = w;
          } else line = line ? `${line} ${w}` : w;
        }
        lines.push(line);
        return lines.join("\n" + " ".repeat(width));
      };
      const sections = Object.entries(spec.groups).map(([title, group]) =>
        `${title}:\n` +
        Object.entries(group).map(([name, f]) => {
          const choices = f.kind === "choice" ? ` (${f.choices.join(", ")})` : "";
          const shown = "default" in f && f.default !== undefined ? String(f.default) : f.shown;
          const def = shown !== undefined ? ` (default ${shown})` : "";
          return left(name, f).padEnd(width) + wrap(f.help + choices + def);
        }).join("\n")
      );
      const help = "  -h, --help".padEnd(width) + "show this help";
      return [
        spec.summary,
        "",
        `Usage: ${spec.usage}`,
        "",
        ...sections.map((s) => s + "\n"),
        help,
        ...(spec.notes ? ["", spec.notes.trim()] : []),
        "",
      ].join("\n");
    },
    parse(args) {
      const options = Object.fromEntries(
        Object.entries(flags).map(([name, f]) => [
          name,
          {
            type: f.kind === "bool" ? "boolean" : "string",
            ...(f.short ? { short: f.short } : {}),
          },
        ]),
      ) as Record<string, { type: "string" | "boolean"; short?: string }>;
      let parsed;
      try {
        parsed = parseArgs({
          args: [...args],
          options: { ...options, help: { type: "boolean", short: "h" } },
          strict: true,
          allowPositionals: spec.positionals ?? false,
        });
      } catch (e) {
        // parseArgs explains in several sentences; keep the first, and the one fix it suggests.
        const msg = (e as Error).message.split("\n")[0];
        const option = msg.match(/'(--[\w-]+)' argument is ambiguous/)?.[1];
        throw new UsageError(
          option
            ? `${option} needs a value (a value starting with '-' is written ${option}=-1)`
            : msg.split(/\.(\s|$)/)[0],
        );
      }
      const values: Record<string, unknown> = {};
      for (const [name, f] of Object.entries(flags)) {
        if (f.kind === "bool") values[name] = false;
        else if (f.default !== undefined) values[name] = f.default;
      }
      for (const [name, raw] of Object.entries(parsed.values)) {
        const f = flags[name];
        if (!f) values[name] = raw; // --help
        else values[name] = typeof raw === "string" ? parseValue(name, f, raw) : raw;
      }
      return { values: values as Values<G> & { help?: boolean }, positionals: parsed.positionals };
    },
  };
}
