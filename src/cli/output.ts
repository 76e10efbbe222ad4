/**
 * Command output, on stdout (logs go to stderr). With --json a command prints its value as
 * JSON, for scripts; without, its text form, for people. One answer is indented JSON; a
 * stream of items (kv watch, events tail) is JSON lines, one compact item per line.
 */

export interface JsonFlag {
  json?: boolean | undefined;
}

/** A line, or lines, of text; each is printed with a newline after it. */
export type Text = string | readonly string[];

export function print(text: Text): void {
  for (const line of typeof text === 'string' ? [text] : text) process.stdout.write(`${line}\n`);
}

/** For answers that have no text form (a stream's info, a schedule): JSON with or without --json. */
export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

/** A command's answer: indented JSON with --json, else the text `text` makes of it. */
export function show<T>(args: JsonFlag, value: T, text: (value: T) => Text): void {
  if (args.json) printJson(value);
  else print(text(value));
}

/**
 * One item of a stream, or an answer scripts read line by line: a compact JSON line with
 * --json, else its text (which may be empty: nothing is printed).
 */
export function showLine<T>(args: JsonFlag, value: T, text: (value: T) => Text): void {
  if (args.json) print(JSON.stringify(value));
  else print(text(value));
}

/** A time in the text form: ISO 8601, or "-" when it has not happened. */
export function formatTime(ms: number | null | undefined): string {
  return ms === undefined || ms === null ? '-' : new Date(ms).toISOString();
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}
