/** The options of a `virtnbdprune` run, as parsed by src/cli/args.ts. */
import type { GivenOptions } from "../util/given-options.js";
import type { EventOptions } from "../report/events.js";
import type { ObjectStorageOptions } from "../storage/object-path.js";
import type { KeepRules } from "./retention.js";

export interface PruneArgs extends GivenOptions, EventOptions, ObjectStorageOptions {
  /** Targets, zip archives, folders of zips, or folders of those. */
  paths: string[];
  keep: KeepRules;
  dryRun: boolean;
  /** libvirt URI: the per-domain lock and the checkpoints of removed chains. */
  uri: string;
  logfile: string;
  nocolor: boolean;
  verbose: boolean;
}
