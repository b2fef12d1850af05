/** A readable stream that may be a terminal (process.stdin). */
export type SecretInput = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(mode: boolean): unknown };

const ENTER = new Set(['\n', '\r']);
const CTRL_C = '\u0003';
const ERASE = new Set(['\u007f', '\b']);

/**
 * One line from `input`, without its line ending; undefined when the user pressed Ctrl-C. On a
 * terminal the line is read in raw mode, so it is not echoed, after a prompt written to `prompt`.
 */
export async function readSecretLine(input: SecretInput, prompt: NodeJS.WritableStream): Promise<string | undefined> {
  const terminal = input.isTTY === true && typeof input.setRawMode === 'function';
  if (terminal) {
    prompt.write('Client secret (not shown): ');
    input.setRawMode!(true);
  }
  input.setEncoding('utf8');
  let line = '';
  try {
    for await (const chunk of input) {
      for (const char of String(chunk)) {
        if (ENTER.has(char)) return line;
        if (terminal && char === CTRL_C) return undefined;
        if (terminal && ERASE.has(char)) line = line.slice(0, -1);
        else line += char;
      }
    }
    return line;
  } finally {
    if (terminal) {
      input.setRawMode!(false);
      prompt.write('\n');
    }
  }
}
