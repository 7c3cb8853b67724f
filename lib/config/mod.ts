/**
 * Client configuration: how a command finds etcd.
 *
 * - `profile.ts`: the config file `~/.torus/config.json`, named profiles of
 *   etcd connection settings, and how a flag, a profile and the defaults
 *   combine ({@linkcode resolveEtcdSettings}).
 * - `etcd_flags.ts`: the etcd flags shared by every command that talks to
 *   etcd ({@linkcode ETCD_FLAGS}), and the step from them to etcd options.
 *
 * @module
 */
export {
  configPathFromFlags,
  ETCD_FLAGS,
  type EtcdFlagOptions,
  etcdOptionsFromFlags,
  etcdSettingsFromFlags,
  profileFromEtcdFlags,
  profileFromFlags,
} from "./etcd_flags.ts";
export {
  type CliConfig,
  CONFIG_DIR_MODE,
  CONFIG_DIR_NAME,
  CONFIG_FILE_BYTES_MAX,
  CONFIG_FILE_MODE,
  CONFIG_FILE_NAME,
  defaultConfigPath,
  type EtcdProfile,
  type EtcdSettings,
  formatCliConfig,
  homeDirectory,
  PROFILE_DEFAULT,
  readCliConfig,
  type ResolvedEtcdSettings,
  resolveEtcdSettings,
  saveProfile,
  viewCliConfig,
  writeCliConfig,
} from "./profile.ts";
