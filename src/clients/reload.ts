import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { loadApplicationsFile, loadConfig, type ApplicationConfig, type Config } from '../config/index.js';

/** Where the application list is read from again on a reload, and the file that holds it. */
export interface ApplicationsSource {
  file: string;
  read(): Promise<ApplicationConfig[]>;
}

/**
 * `applicationsFile` when set; else the configuration file the sidecar was started with (only its
 * `applications` are taken again); else nothing: the list given at start is final.
 */
export function applicationsSource(config: Config, configFile: string | undefined, env: NodeJS.ProcessEnv): ApplicationsSource | undefined {
  const { applicationsFile } = config;
  if (applicationsFile !== undefined) return { file: applicationsFile, read: () => loadApplicationsFile(applicationsFile) };
  if (configFile !== undefined) return { file: configFile, read: async () => (await loadConfig({ file: configFile, env })).config.applications };
  return undefined;
}

/** Changes settle for this long before a reload: editors and Kubernetes write in several steps. */
const DEBOUNCE_MS = 200;

/**
 * Calls `onChange` (debounced) when one of `files` changes. Directories are watched rather than the
 * files, so that a file replaced by a rename — an editor's save, Kubernetes' `..data` symlink swap of
 * a mounted Secret or ConfigMap — is still seen. Returns the function that stops watching.
 */
export function watchFiles(files: readonly string[], onChange: () => void, onError: (error: Error) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, DEBOUNCE_MS);
  };
  const watchers = [...namesByDirectory(files)].flatMap(([directory, names]) => {
    try {
      const watcher: FSWatcher = watch(directory, { persistent: false }, (_event, name) => {
        if (name === null || names.has(name) || name.startsWith('..')) changed();
      });
      watcher.on('error', onError);
      return [watcher];
    } catch (error) {
      onError(error as Error);
      return [];
    }
  });
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}

function namesByDirectory(files: readonly string[]): Map<string, Set<string>> {
  const byDirectory = new Map<string, Set<string>>();
  for (const file of files.map((path) => resolve(path))) {
    const names = byDirectory.get(dirname(file)) ?? new Set<string>();
    names.add(basename(file));
    byDirectory.set(dirname(file), names);
  }
  return byDirectory;
}
