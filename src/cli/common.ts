/**
 * What every command-line tool shares: its entry point, how errors end it, and how batch runs
 * show their progress and stop.
 */

import { runAll, type RunOutcome, type RunSpec } from "../batch_runs.ts";
import { UserError } from "../errors.ts";
import { type Command, type FlagGroups, UsageError, type Values } from "./flags.ts";

/**
 * Runs a tool: parses its flags (printing the generated --help when asked) and calls `main`.
 * A UserError (bad input) becomes one line on stderr and exit code 1, a bad flag exit code 2;
 * anything else is a bug and keeps its stack trace.
 */
export async function runCommand<G extends FlagGroups>(
  command: Command<G>,
  main: (values: Values<G>, positionals: string[]) => Promise<number | void>,
): Promise<never> {
  try {
    const { values, positionals } = command.parse(Deno.args);
    if (values.help) {
      console.log(command.help());
      Deno.exit(0);
    }
    const code = await main(values, positionals);
    Deno.exit(code ?? 0);
  } catch (e) {
    if (e instanceof UserError) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    if (e instanceof UsageError) {
      console.error(`error: ${e.message} (see --help)`);
      Deno.exit(2);
    }
    throw e;
  }
}

/**
 * Runs batch runs from a terminal: one progress line (rewritten in place on a terminal, a line
 * every second or so otherwise), and Ctrl-C stops them all, each saving its checkpoint, so the
 * same command run again goes on. `interrupted` says whether that happened.
 */
export async function runInTerminal(
  specs: readonly RunSpec[],
  jobs: number,
): Promise<{ outcomes: RunOutcome[]; interrupted: boolean }> {
  const stop = new AbortController();
  const onSignal = () => {
    console.error("\ninterrupted: stopping the runs (each saves a checkpoint); run again to go on");
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  const tty = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  try {
    const outcomes = await runAll(specs, {
      jobs,
      signal: stop.signal,
      progress: (line) =>
        tty ? Deno.stdout.writeSync(enc.encode(`\r\x1b[2K${line}`)) : console.log(line),
    });
    if (tty) console.log("");
    for (const o of outcomes.filter((o) => o.status === "failed")) {
      console.error(`run ${o.spec.name} failed: ${o.error}`);
    }
    return { outcomes, interrupted: stop.signal.aborted };
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}
