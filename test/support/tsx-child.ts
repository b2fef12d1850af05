/**
 * The environment for a child process that runs the project's TypeScript through tsx: this
 * process's, plus `extra`, with tap's coverage recording off. tsx compiles the sources otherwise
 * than tap's loader does, and coverage from both does not merge: it counted covered lines as
 * uncovered, and depending on the order of the files it emptied the whole report.
 */
export function tsxChildEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, ...extra, _TAPJS_PROCESSINFO_COVERAGE_: '0' };
}
