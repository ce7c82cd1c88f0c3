/** What every command-line tool shares: its entry point, and how errors end it. */

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
