/**
 * The one configuration object of vzdump-zfs: read from YAML, validated against a JSON Schema
 * (ajv), defaults filled in. A bad file fails with one line naming the file and the bad key
 * ("config '/etc/vzdump-zfs/config.yaml': store.recordsize must match ...").
 *
 * Owns the schema, the defaults and the file location (`/etc/vzdump-zfs/config.yaml`, or
 * `$VZDUMP_ZFS_CONFIG`, or `--config`). A missing default file is an empty config; a missing file
 * that was named explicitly is an error. Command-line options override values after loading.
 */
import * as fs from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { ConfigError } from './errors';
import { isKnownTimeZone } from './util/localtime';
import { datasetNameProblem } from './store/zfs';

export const DEFAULT_CONFIG_PATH = '/etc/vzdump-zfs/config.yaml';

export interface StoreConfig {
  /** root dataset; one child per guest */
  dataset?: string;
  /** recordsize of new guest datasets (docs/design.md explains the default) */
  recordsize: string;
  /** compression of new guest datasets; unset = inherit the root's, `on` where that is `off` */
  compression?: string;
  /** where per-guest ingest locks live */
  lockDir: string;
}

export interface Config {
  store: StoreConfig;
  pve: {
    /** IANA zone of the PVE nodes: archive names and prune periods use their local time */
    timeZone?: string;
  };
}

export const CONFIG_SCHEMA = {
  $id: 'https://vzdump-zfs/config.schema.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    store: {
      type: 'object',
      additionalProperties: false,
      properties: {
        dataset: { type: 'string' }, // checked by datasetNameProblem below, the store's own rule
        recordsize: { type: 'string', pattern: '^(4|8|16|32|64|128|256|512|1024)[Kk]$|^1[Mm]$' },
        compression: { type: 'string', pattern: '^(on|off|lz4|zstd(-[0-9]+)?|gzip(-[1-9])?|lzjb|zle)$' },
        lockDir: { type: 'string', pattern: '^/' },
      },
    },
    pve: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeZone: { type: 'string', minLength: 1 },
      },
    },
  },
} as const;

export const DEFAULTS: Config = {
  store: { recordsize: '64K', lockDir: '/run/lock/vzdump-zfs' },
  pve: {},
};

let validator: ValidateFunction | undefined;
/**
 * Loaded and compiled on first use: commands that need no config (`vma ...`) do not pay for it
 * (ajv and yaml take about 30 ms to load, a third of the CLI's start-up).
 */
function validate(value: unknown): boolean {
  if (!validator) {
    const Ajv = (require('ajv') as typeof import('ajv')).default;
    validator = new Ajv({ allErrors: false, strict: true }).compile(CONFIG_SCHEMA);
  }
  return validator(value) as boolean;
}

function parseYaml(text: string): unknown {
  return (require('yaml') as typeof import('yaml')).parse(text);
}

function describe(err: ErrorObject): string {
  const key = err.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (err.keyword === 'additionalProperties') {
    const extra = (err.params as { additionalProperty: string }).additionalProperty;
    return `${key ? key + '.' : ''}${extra} is not a known setting`;
  }
  return `${key || '(top level)'} ${err.message ?? 'is invalid'}`;
}

function badKey(err: ErrorObject): string {
  const key = err.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (err.keyword === 'additionalProperties') {
    const extra = (err.params as { additionalProperty: string }).additionalProperty;
    return key ? `${key}.${extra}` : extra;
  }
  return key;
}

/** Validates a parsed config object and fills in defaults. `source` names it in errors. */
export function validateConfig(raw: unknown, source: string): Config {
  const value = raw ?? {};
  if (!validate(value)) {
    const err = validator!.errors![0]!;
    throw new ConfigError(`config ${source}: ${describe(err)}`, badKey(err));
  }
  const v = value as { store?: Partial<StoreConfig>; pve?: Config['pve'] };
  const cfg: Config = {
    store: { ...DEFAULTS.store, ...(v.store ?? {}) },
    pve: { ...DEFAULTS.pve, ...(v.pve ?? {}) },
  };
  const badDataset = cfg.store.dataset !== undefined ? datasetNameProblem(cfg.store.dataset) : undefined;
  if (badDataset) throw new ConfigError(`config ${source}: store.dataset '${cfg.store.dataset}' is not a dataset name - ${badDataset}`, 'store.dataset');
  if (cfg.pve.timeZone && !isKnownTimeZone(cfg.pve.timeZone)) {
    throw new ConfigError(`config ${source}: pve.timeZone '${cfg.pve.timeZone}' is not a known IANA time zone`, 'pve.timeZone');
  }
  return cfg;
}

/** Loads the config file: `file` if given, else $VZDUMP_ZFS_CONFIG, else the default path if present. */
export function loadConfig(file?: string): Config {
  const explicit = file ?? process.env.VZDUMP_ZFS_CONFIG;
  const p = explicit ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (e) {
    if (!explicit && (e as NodeJS.ErrnoException).code === 'ENOENT') return validateConfig({}, 'defaults');
    throw new ConfigError(`cannot read config '${p}': ${(e as Error).message}`, '', { cause: e });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config '${p}' is not valid YAML: ${(e as Error).message.split('\n')[0]}`, '', { cause: e });
  }
  return validateConfig(raw, `'${p}'`);
}
