import { readFile } from 'node:fs/promises';

/** The bytes of a file a configuration key names (a key, a certificate); an unreadable one throws a line naming the key. */
export function readConfiguredFile(key: string, file: string): Promise<Buffer> {
  return readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${key}: ${unreadableFile(file, error)}`);
  });
}

/** Why a configured file could not be read, e.g. `cannot read "/etc/x.pem" (ENOENT)`. */
export function unreadableFile(file: string, error: NodeJS.ErrnoException): string {
  return `cannot read "${file}" (${error.code ?? 'unreadable'})`;
}
