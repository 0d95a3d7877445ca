/** `vzdump-zfs demo` (placeholder, filled in by the store work). */
import { Command } from 'commander';
export function registerDemoCommand(_program: Command): void {}
