/** `vzdump-zfs ingest|restore|list|notes|protect|forget|prune` (placeholder, filled in by the store work). */
import { Command } from 'commander';
export function registerStoreCommands(_program: Command): void {}
