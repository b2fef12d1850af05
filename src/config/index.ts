export {
  configSchema,
  isHttpsOrLoopback,
  DEFAULT_IDENTITY_HEADERS,
  type Config,
  type ConfigInput,
  type ApplicationConfig,
} from './schema.js';
export {
  loadConfig,
  loadApplicationsFile,
  ConfigError,
  formatConfigProblems,
  redactConfig,
  envVariableName,
  configKeyPaths,
  type LoadConfigOptions,
  type LoadedConfig,
} from './load.js';
