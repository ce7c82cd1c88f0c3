/**
 * An error caused by the user's input (a file, a flag, a checkpoint), as opposed to a bug.
 * The command-line tools print its message as one line on stderr and exit non-zero, with no
 * stack trace; every other exception is a bug and keeps its trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}
