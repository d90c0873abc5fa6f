/*
 * The configuration module's public surface: load and validate the gateway's configuration.
 * See docs/configuration.md for every key, and DESIGN.md "Configuration contract".
 */
export { ConfigError, type ConfigProblem } from './config-error.ts';
export { buildConfig, loadConfigFile, parseConfigText, type ConfigOptions } from './load.ts';
export {
  isLoopbackHost,
  reservedPaths,
  type AccessConfig,
  type AccessRules,
  type Config,
  type DevProviderConfig,
  type IdentityProviderConfig,
  type OidcProviderConfig,
  type ServiceConfig,
  type StaticClientConfig,
  type StoreConfig,
} from './schema.ts';
