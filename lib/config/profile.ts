/**
 * The client config file of the original (§1.1 of the reference),
 * `~/.torus/config.json`: named profiles of etcd connection settings, written
 * by `torusctl config` and read by every command that talks to etcd.
 *
 * ```json
 * { "etcd_config": { "default": { "etcd": "a:2379,b:2379", "etcd-ca-file": "/ca.pem",
 *   "etcd-cert-file": "/client.pem", "etcd-key-file": "/client-key.pem" } } }
 * ```
 *
 * Resolution (as the original's `BuildConfigFromFlags`): an explicit flag
 * wins; an unset or empty flag takes the profile's value; the endpoints
 * finally default to {@linkcode ETCD_ENDPOINT_DEFAULT}. The file is only read
 * when it exists, unless `--config` names it; the profile is `default`
 * unless `--profile` names one, and a named profile must exist.
 *
 * The file may name key files, so the directory is created 0700 and the file
 * written 0600 (atomically, by rename). File paths are stored absolute, so a
 * profile works from any directory.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import {
  ETCD_ENDPOINT_DEFAULT,
  normalizeEtcdEndpoints,
  splitEtcdEndpoints,
} from "../metadata/etcd_endpoints.ts";
import type { EtcdTlsFiles } from "../metadata/etcd_metadata.ts";

/** Directory of the config file, under the home directory. */
export const CONFIG_DIR_NAME = ".torus";
/** Name of the config file. */
export const CONFIG_FILE_NAME = "config.json";
/** The profile used when none is named. */
export const PROFILE_DEFAULT = "default";
/** Mode of the config directory: only its owner may list it. */
export const CONFIG_DIR_MODE = 0o700;
/** Mode of the config file: it names TLS key files. */
export const CONFIG_FILE_MODE = 0o600;
/** Largest config file read, in bytes: a few profiles take a few hundred. */
export const CONFIG_FILE_BYTES_MAX = 1024 * 1024;

/** One profile: etcd settings, with the original's field names. */
export interface EtcdProfile {
  /** Endpoints, comma-separated. */
  etcd?: string;
  /** CA bundle that signed etcd's certificate. */
  "etcd-ca-file"?: string;
  /** Client certificate. */
  "etcd-cert-file"?: string;
  /** Key of the client certificate. */
  "etcd-key-file"?: string;
}

/** The config file's contents. */
export interface CliConfig {
  /** Profiles by name. */
  etcd_config: Record<string, EtcdProfile>;
}

/** The profile fields, in the order they are written. */
const PROFILE_FIELDS = ["etcd", "etcd-ca-file", "etcd-cert-file", "etcd-key-file"] as const;

/** Etcd settings from the command line (undefined or empty: not given). */
export interface EtcdSettings {
  /** Endpoints, comma-separated (`--etcd`). */
  etcd?: string;
  /** CA bundle (`--etcd-ca-file`). */
  caFile?: string;
  /** Client certificate (`--etcd-cert-file`). */
  certFile?: string;
  /** Key of the client certificate (`--etcd-key-file`). */
  keyFile?: string;
  /** The config file (`--config`); `~/.torus/config.json` when it exists otherwise. */
  config?: string;
  /** The profile (`--profile`); {@linkcode PROFILE_DEFAULT} otherwise. */
  profile?: string;
}

/** Where the etcd of a command is, after flags, profile and defaults. */
export interface ResolvedEtcdSettings {
  /** Endpoints as written (normalized when connecting). */
  endpoints: string[];
  /** TLS files, when any is set. */
  tls?: EtcdTlsFiles;
  /** The profile consulted. */
  profile: string;
  /** The config file read, or null when there was none. */
  configPath: string | null;
}

/** The config file in `home`: `<home>/.torus/config.json`. */
export function defaultConfigPath(home: string): string {
  return join(home, CONFIG_DIR_NAME, CONFIG_FILE_NAME);
}

/**
 * The home directory from `$HOME`.
 *
 * @throws {Deno.errors.NotFound} when `HOME` is not set.
 */
export function homeDirectory(): string {
  const home = Deno.env.get("HOME");
  if (home === undefined || home === "") {
    throw new Deno.errors.NotFound(
      "Cannot find the Torus config file: HOME is not set (pass --config)",
    );
  }
  return home;
}

function checkProfileName(name: string): void {
  if (typeof name !== "string" || name.trim() === "") {
    throw new RangeError(`Cannot use profile ${JSON.stringify(name)}: a name must not be empty`);
  }
}

/** Validates parsed JSON as a {@linkcode CliConfig}. */
function checkConfig(path: string, value: unknown): CliConfig {
  const bad = (detail: string) =>
    new SyntaxError(`Cannot read the Torus config file "${path}": ${detail}`);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("expected a JSON object");
  }
  const profiles = (value as { etcd_config?: unknown }).etcd_config ?? {};
  if (typeof profiles !== "object" || profiles === null || Array.isArray(profiles)) {
    throw bad(`"etcd_config" must be an object of profiles`);
  }
  const config: CliConfig = { etcd_config: {} };
  for (const [name, profile] of Object.entries(profiles)) {
    if (typeof profile !== "object" || profile === null || Array.isArray(profile)) {
      throw bad(`profile "${name}" must be an object`);
    }
    const checked: EtcdProfile = {};
    for (const field of PROFILE_FIELDS) {
      const text = (profile as Record<string, unknown>)[field];
      if (text === undefined || text === "") continue;
      if (typeof text !== "string") throw bad(`"${field}" of profile "${name}" must be a string`);
      checked[field] = text;
    }
    config.etcd_config[name] = checked;
  }
  return config;
}

/**
 * Reads the config file; null when it does not exist.
 *
 * @throws {SyntaxError} when it is not a config file.
 * @throws {RangeError} when it is larger than {@linkcode CONFIG_FILE_BYTES_MAX}.
 */
export async function readCliConfig(path: string): Promise<CliConfig | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  let bytes: Uint8Array;
  try {
    const { size } = await file.stat();
    if (size > CONFIG_FILE_BYTES_MAX) {
      throw new RangeError(
        `Cannot read the Torus config file "${path}": it is ${size} bytes, the maximum is ` +
          `${CONFIG_FILE_BYTES_MAX}`,
      );
    }
    bytes = new Uint8Array(await new Response(file.readable).arrayBuffer());
  } finally {
    try {
      file.close();
    } catch {
      // Already closed by reading its stream to the end.
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new SyntaxError(
      `Cannot read the Torus config file "${path}": ${(error as Error).message}`,
    );
  }
  return checkConfig(path, value);
}

/** The config as the file holds it: JSON indented with tabs, as the original wrote it. */
export function formatCliConfig(config: CliConfig): string {
  return JSON.stringify(config, null, "\t") + "\n";
}

/**
 * The config file as `torusctl config --view` prints it: the whole file, or
 * one profile's entry, indented with tabs.
 *
 * @throws {Deno.errors.NotFound} when the file does not exist.
 * @throws {RangeError} when `profile` is given and the file has no such profile.
 * @throws {SyntaxError} on a malformed file.
 */
export async function viewCliConfig(path: string, profile?: string): Promise<string> {
  const config = await readCliConfig(path);
  if (config === null) {
    throw new Deno.errors.NotFound(
      `Cannot view "${path}": it does not exist (write it with "torusctl config --etcd ...")`,
    );
  }
  if (profile === undefined) return formatCliConfig(config).trimEnd();
  const entry = config.etcd_config[profile];
  if (entry === undefined) {
    throw new RangeError(`Cannot view profile "${profile}": "${path}" has no such profile`);
  }
  return JSON.stringify(entry, null, "\t");
}

/**
 * Writes the config file, pretty-printed with tabs as the original: the
 * directory is created 0700 when missing, and the file replaced atomically
 * with mode 0600.
 */
export async function writeCliConfig(path: string, config: CliConfig): Promise<void> {
  const directory = dirname(path);
  await Deno.mkdir(directory, { recursive: true, mode: CONFIG_DIR_MODE });
  const text = formatCliConfig(checkConfig(path, config));
  const temporary = join(directory, `.${CONFIG_FILE_NAME}.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(temporary, text, { mode: CONFIG_FILE_MODE, createNew: true });
    // The mode given to open is masked by the umask; the file must not be readable by others.
    await Deno.chmod(temporary, CONFIG_FILE_MODE);
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/**
 * Stores `profile` under `name` in the config file at `path`, replacing a
 * profile of that name and keeping the others. Endpoints are checked and
 * file paths made absolute.
 *
 * @returns the config as written.
 * @throws {RangeError} on bad endpoints, an empty name, or a certificate without its key.
 */
export async function saveProfile(
  path: string,
  name: string,
  profile: EtcdProfile,
): Promise<CliConfig> {
  checkProfileName(name);
  const stored: EtcdProfile = {};
  const etcd = profile.etcd || ETCD_ENDPOINT_DEFAULT;
  const secure = Boolean(
    profile["etcd-ca-file"] || profile["etcd-cert-file"] || profile["etcd-key-file"],
  );
  normalizeEtcdEndpoints(splitEtcdEndpoints(etcd), secure);
  stored.etcd = etcd;
  if (!profile["etcd-cert-file"] !== !profile["etcd-key-file"]) {
    throw new RangeError(
      `Cannot save profile "${name}": a client certificate needs its key and a key its ` +
        `certificate (set both --etcd-cert-file and --etcd-key-file)`,
    );
  }
  for (const field of ["etcd-ca-file", "etcd-cert-file", "etcd-key-file"] as const) {
    const file = profile[field];
    if (file) stored[field] = resolve(file);
  }
  const config = await readCliConfig(path) ?? { etcd_config: {} };
  config.etcd_config[name] = stored;
  await writeCliConfig(path, config);
  return config;
}

/**
 * Resolves where etcd is: explicit settings, then the profile, then
 * {@linkcode ETCD_ENDPOINT_DEFAULT}.
 *
 * @param options.home The home directory whose `.torus/config.json` is read
 * when `settings.config` is unset (injectable for tests; `$HOME` by default).
 * @throws {Deno.errors.NotFound} when `settings.config` names a missing file,
 * or it is unset and so is `HOME`.
 * @throws {RangeError} when `settings.profile` names a missing profile, or on bad endpoints.
 * @throws {SyntaxError} on a malformed config file.
 */
export async function resolveEtcdSettings(
  settings: EtcdSettings,
  options: { home?: string } = {},
): Promise<ResolvedEtcdSettings> {
  const explicitPath = settings.config || undefined;
  const path = explicitPath ?? defaultConfigPath(options.home ?? homeDirectory());
  const config = await readCliConfig(path);
  if (config === null && explicitPath !== undefined) {
    throw new Deno.errors.NotFound(
      `Cannot read the Torus config file "${explicitPath}": it does not exist`,
    );
  }
  const explicitProfile = settings.profile || undefined;
  const name = explicitProfile ?? PROFILE_DEFAULT;
  checkProfileName(name);
  const profile = config?.etcd_config[name];
  if (profile === undefined && explicitProfile !== undefined) {
    throw new RangeError(
      `Cannot use profile "${name}": ${
        config === null ? `there is no config file at "${path}"` : `"${path}" has no such profile`
      } (write it with "torusctl config --profile ${name} ...")`,
    );
  }
  const etcd = settings.etcd || profile?.etcd || ETCD_ENDPOINT_DEFAULT;
  const caFile = settings.caFile || profile?.["etcd-ca-file"];
  const certFile = settings.certFile || profile?.["etcd-cert-file"];
  const keyFile = settings.keyFile || profile?.["etcd-key-file"];
  const tls: EtcdTlsFiles = {
    ...(caFile ? { caFile } : {}),
    ...(certFile ? { certFile } : {}),
    ...(keyFile ? { keyFile } : {}),
  };
  const secure = Object.keys(tls).length > 0;
  const endpoints = splitEtcdEndpoints(etcd);
  normalizeEtcdEndpoints(endpoints, secure);
  return {
    endpoints,
    ...(secure ? { tls } : {}),
    profile: name,
    configPath: config === null ? null : path,
  };
}
