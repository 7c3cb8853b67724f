/**
 * The etcd flags every command that talks to etcd shares (the original's
 * `flagconfig.AddConfigFlags`): `--etcd/-C`, `--etcd-ca-file`,
 * `--etcd-cert-file`, `--etcd-key-file`, `--config` and `--profile`, and the
 * step from parsed flags to {@linkcode EtcdMetadataOptions}.
 *
 * The flags have no parser defaults, so that an unset flag can fall back to
 * the profile (see `profile.ts`); their help names the defaults.
 *
 * @module
 */
import type { FlagSpec, Invocation } from "../cli/command.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { ETCD_ENDPOINT_DEFAULT } from "../metadata/etcd_endpoints.ts";
import type { EtcdMetadataOptions } from "../metadata/etcd_metadata.ts";
import {
  defaultConfigPath,
  type EtcdProfile,
  type EtcdSettings,
  homeDirectory,
  PROFILE_DEFAULT,
  resolveEtcdSettings,
} from "./profile.ts";

/** The shared etcd flags, to spread into a command's (or the root's) flags. */
export const ETCD_FLAGS: Record<string, FlagSpec> = {
  etcd: {
    type: "string",
    short: "C",
    description: `etcd endpoints, comma-separated host:port, http:// or https:// ` +
      `(default: the profile's, else ${ETCD_ENDPOINT_DEFAULT})`,
    valueName: "ENDPOINTS",
  },
  "etcd-ca-file": {
    type: "string",
    description: "CA bundle that signed etcd's certificate (enables TLS)",
    valueName: "FILE",
  },
  "etcd-cert-file": {
    type: "string",
    description: "client certificate for etcd (enables TLS; needs --etcd-key-file)",
    valueName: "FILE",
  },
  "etcd-key-file": {
    type: "string",
    description: "key of the client certificate",
    valueName: "FILE",
  },
  config: {
    type: "string",
    description: "client config file (default ~/.torus/config.json when it exists)",
    valueName: "FILE",
  },
  profile: {
    type: "string",
    description: `profile of the config file (default "${PROFILE_DEFAULT}")`,
    valueName: "NAME",
  },
};

function stringFlag(flags: Invocation["flags"], name: string): string | undefined {
  const value = flags[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") {
    throw new TypeError(`Cannot read flag --${name}: expected a string, got ${typeof value}`);
  }
  return value;
}

/** The etcd settings among parsed flags. */
export function etcdSettingsFromFlags(flags: Invocation["flags"]): EtcdSettings {
  const settings: EtcdSettings = {};
  const pairs = [
    ["etcd", "etcd"],
    ["caFile", "etcd-ca-file"],
    ["certFile", "etcd-cert-file"],
    ["keyFile", "etcd-key-file"],
    ["config", "config"],
    ["profile", "profile"],
  ] as const;
  for (const [field, flag] of pairs) {
    const value = stringFlag(flags, flag);
    if (value !== undefined) settings[field] = value;
  }
  return settings;
}

/**
 * The config file the flags name: `--config`, else `~/.torus/config.json`.
 *
 * @param home Where `~/.torus` is; `$HOME` by default.
 * @throws {Deno.errors.NotFound} when neither `--config` nor a home is known.
 */
export function configPathFromFlags(flags: Invocation["flags"], home?: string): string {
  return stringFlag(flags, "config") ?? defaultConfigPath(home ?? homeDirectory());
}

/** The profile the flags name: `--profile`, else {@linkcode PROFILE_DEFAULT}. */
export function profileFromFlags(flags: Invocation["flags"]): string {
  return stringFlag(flags, "profile") ?? PROFILE_DEFAULT;
}

/** The profile the etcd flags describe, for `torusctl config` to save (unset fields omitted). */
export function profileFromEtcdFlags(flags: Invocation["flags"]): EtcdProfile {
  const settings = etcdSettingsFromFlags(flags);
  return {
    ...(settings.etcd === undefined ? {} : { etcd: settings.etcd }),
    ...(settings.caFile === undefined ? {} : { "etcd-ca-file": settings.caFile }),
    ...(settings.certFile === undefined ? {} : { "etcd-cert-file": settings.certFile }),
    ...(settings.keyFile === undefined ? {} : { "etcd-key-file": settings.keyFile }),
  };
}

/** Options of {@linkcode etcdOptionsFromFlags}. */
export interface EtcdFlagOptions {
  /** Time source of the metadata service. */
  clock: Clock;
  /** This process's identity. */
  uuid?: string;
  /** Where `~/.torus` is. @default {$HOME} */
  home?: string;
  /** Where the metadata service reports watch disconnections. */
  logger?: Logger;
}

/**
 * Turns parsed flags into the options of `EtcdMetadata.open`: flags, then
 * the profile, then the default endpoint.
 *
 * @throws {RangeError} on bad endpoints or a missing named profile.
 * @throws {SyntaxError} on a malformed config file.
 * @throws {Deno.errors.NotFound} when `--config` names a missing file, or
 * `HOME` is unset and no `--config` is given.
 */
export async function etcdOptionsFromFlags(
  flags: Invocation["flags"],
  options: EtcdFlagOptions,
): Promise<EtcdMetadataOptions> {
  const resolved = await resolveEtcdSettings(
    etcdSettingsFromFlags(flags),
    options.home === undefined ? {} : { home: options.home },
  );
  return {
    endpoints: resolved.endpoints,
    ...(resolved.tls ? { tls: resolved.tls } : {}),
    clock: options.clock,
    ...(options.uuid === undefined ? {} : { uuid: options.uuid }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  };
}
