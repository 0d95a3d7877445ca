/** `vzdump-zfs vma list|config|verify|extract|create` (placeholder, filled in by the codec work). */
import { Command } from 'commander';
export function registerVmaCommands(_program: Command): void {}
