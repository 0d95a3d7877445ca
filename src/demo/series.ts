/**
 * Generates a realistic series of daily vzdump backups of one VM for the demo and the benchmark:
 * an ext4 file system image (made and changed with the real mkfs.ext4 and debugfs, so block
 * allocation behaves like a guest's) whose files are added, changed in place and deleted day by
 * day, plus
 * a small EFI vars disk, each day written as `vzdump-qemu-<vmid>-<time>.vma.zst` with its `.log`
 * by the project's own VMA writer and the real zstd.
 *
 * Owns the generated content and the work directory layout; knows nothing of ZFS. Content is
 * seeded, so a series is reproducible. File contents are staged one file at a time (never a copy of
 * a disk).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { VzError } from '../errors';
import { compress } from '../archive/compression';
import { archiveFileName, epochToTimestamp, logFileName } from '../archive/names';
import { writeVma } from '../vma/writer';
import { imageClusters } from '../restore/image-clusters';
import { floats, prng } from '../util/prng';

const run = promisify(execFile);

const WORDS = (
  'the of and to in is was for on that with as by at from this be are or an it not have which has but were ' +
  'backup snapshot pool dataset guest disk cluster block archive restore zfs proxmox vzdump node storage config ' +
  'kernel service network user error warning info debug request response time date value table index record ' +
  'linux debian system package update install release version build test check log file path'
).split(' ');

/** Text that compresses like logs and documents do (about 3-4x with zstd). */
function textContent(bytes: number, rnd: () => number): Buffer {
  const parts: string[] = [];
  let n = 0;
  let line = 0;
  while (n < bytes) {
    const words: string[] = [`${2026}-11-${String(1 + (line % 28)).padStart(2, '0')} ${String(line % 24).padStart(2, '0')}:${String((line * 7) % 60).padStart(2, '0')}`];
    const count = 6 + Math.floor(rnd() * 10);
    for (let i = 0; i < count; i++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]!);
    words.push(String(Math.floor(rnd() * 1e6)));
    const s = words.join(' ') + '\n';
    parts.push(s);
    n += s.length;
    line++;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

export interface SeriesOptions {
  dir: string;
  vmid: number;
  /** size of the main disk */
  diskSize: number;
  days: number;
  /** share of the disk's 4 KiB blocks rewritten per day (0.02 = 2 %) */
  changeRate?: number;
  /** share of the disk filled on day 1 */
  fill?: number;
  /** first backup time, epoch seconds */
  start?: number;
  timeZone?: string;
  seed?: number;
  zstdThreads?: number;
}

export interface DayArchive {
  day: number;
  archivePath: string;
  archiveSize: number;
  timestamp: string;
  /** the disk images as they are after this day (valid until the next day is generated) */
  images: { name: string; path: string; size: number }[];
  configs: { name: string; data: Buffer }[];
}

interface FileEntry {
  name: string;
  size: number;
}

/** PVE's EFI vars disk: 528 KiB, not a whole number of 64 KiB clusters (exercises the partial last cluster). */
export const EFI_DISK_SIZE = 540672;

/** Drives the series day by day: `next()` changes the guest and writes that day's archive. */
export class BackupSeries {
  readonly diskPath: string;
  readonly efiPath: string;
  private readonly rnd: () => number;
  private readonly files: FileEntry[] = [];
  private fileSeq = 0;
  private day = 0;
  private readonly stage: string;

  constructor(readonly opts: SeriesOptions) {
    this.rnd = floats(prng(opts.seed ?? 42));
    this.diskPath = path.join(opts.dir, 'guest-disk.raw');
    this.efiPath = path.join(opts.dir, 'guest-efivars.raw');
    this.stage = path.join(opts.dir, 'stage');
  }

  private async debugfs(commands: string[], write = true): Promise<string> {
    if (commands.length === 0) return '';
    const cmdFile = path.join(this.opts.dir, 'debugfs.cmds');
    fs.writeFileSync(cmdFile, commands.join('\n') + '\n');
    try {
      const { stdout } = await run('debugfs', [...(write ? ['-w'] : []), '-f', cmdFile, this.diskPath], { maxBuffer: 64 << 20 });
      return stdout;
    } catch (e) {
      throw new VzError(`debugfs failed on '${this.diskPath}': ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
  }

  /**
   * Rewrites runs of blocks inside existing files, in place, the way a database or a VM image
   * inside the guest changes: the file system's block map is asked where the files live, and the
   * disk image is written there directly.
   */
  private async modifyFiles(bytes: number): Promise<void> {
    if (this.files.length === 0) return;
    const picks: FileEntry[] = [];
    let planned = 0;
    while (planned < bytes && picks.length < this.files.length) {
      const f = this.files[Math.floor(this.rnd() * this.files.length)]!;
      if (picks.includes(f)) continue;
      picks.push(f);
      planned += Math.min(f.size, 64 * 4096);
    }
    const out = await this.debugfs(picks.map((f) => `blocks ${f.name}`), false);
    const lists = out.split(/^debugfs: blocks .*$/m).slice(1).map((t) => t.trim().split(/\s+/).filter(Boolean).map(Number));
    const fd = fs.openSync(this.diskPath, 'r+');
    try {
      let left = bytes;
      for (const [i, blocks] of lists.entries()) {
        if (left <= 0 || blocks.length === 0) continue;
        const run = Math.min(blocks.length, 1 + Math.floor(this.rnd() * 64), Math.ceil(left / 4096));
        const start = Math.floor(this.rnd() * (blocks.length - run + 1));
        const text = picks[i]!.name.endsWith('.log');
        for (const b of blocks.slice(start, start + run)) {
          fs.writeSync(fd, text ? textContent(4096, this.rnd) : randomBytes(4096), 0, 4096, b * 4096);
        }
        left -= run * 4096;
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  private async init(): Promise<void> {
    fs.mkdirSync(this.stage, { recursive: true });
    fs.writeFileSync(this.diskPath, '');
    fs.truncateSync(this.diskPath, this.opts.diskSize);
    try {
      await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'lazy_itable_init=0,nodiscard', '-L', 'demo-root', this.diskPath]);
    } catch (e) {
      throw new VzError(`mkfs.ext4 failed - is e2fsprogs installed? ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
    await this.debugfs(['mkdir /home', 'mkdir /var', 'mkdir /var/log', 'mkdir /srv']);
    const efi = Buffer.alloc(EFI_DISK_SIZE);
    randomFill(efi.subarray(0, 65536), this.rnd);
    fs.writeFileSync(this.efiPath, efi);
  }

  /** Writes `bytes` of new file data into the file system as a handful of files. */
  private async addFiles(bytes: number): Promise<void> {
    const cmds: string[] = [];
    let left = bytes;
    while (left > 4096) {
      const size = Math.min(left, 4096 * (16 + Math.floor(this.rnd() * 2048)));
      const name = `/srv/f${++this.fileSeq}.${this.rnd() < 0.5 ? 'log' : 'bin'}`;
      const stagePath = path.join(this.stage, `f${this.fileSeq}`);
      const data = name.endsWith('.log') ? textContent(size, this.rnd) : randomBytes(size);
      fs.writeFileSync(stagePath, data);
      cmds.push(`write ${stagePath} ${name}`);
      this.files.push({ name, size });
      left -= size;
    }
    await this.debugfs(cmds);
    for (const f of fs.readdirSync(this.stage)) fs.rmSync(path.join(this.stage, f));
  }

  private async deleteFiles(bytes: number): Promise<void> {
    const cmds: string[] = [];
    let freed = 0;
    while (freed < bytes && this.files.length > 1) {
      const i = Math.floor(this.rnd() * this.files.length);
      const [f] = this.files.splice(i, 1);
      cmds.push(`rm ${f!.name}`);
      freed += f!.size;
    }
    await this.debugfs(cmds);
  }

  /** Changes the guest for the next day (nothing before day 1) and writes its archive. */
  async next(): Promise<DayArchive> {
    this.day++;
    const changeRate = this.opts.changeRate ?? 0.02;
    if (this.day === 1) {
      await this.init();
      await this.addFiles(Math.floor(this.opts.diskSize * (this.opts.fill ?? 0.4)));
    } else {
      // a day's change: half rewritten in place inside existing files, half new files (which
      // partly reuse blocks freed by the files deleted that day), so about `changeRate` of the
      // disk's blocks really change while the file system stays about as full
      const change = Math.floor(this.opts.diskSize * changeRate);
      await this.modifyFiles(Math.floor(change / 2));
      await this.deleteFiles(Math.floor(change / 2));
      await this.addFiles(change - Math.floor(change / 2));
    }
    const start = this.opts.start ?? Date.UTC(2026, 10, 1, 2, 0, 0) / 1000;
    const when = start + (this.day - 1) * 86400;
    const timestamp = epochToTimestamp(when, this.opts.timeZone);
    const fileName = archiveFileName({ vmtype: 'qemu', vmid: this.opts.vmid, timestamp, compression: 'zst' });
    const archivePath = path.join(this.opts.dir, fileName);
    const memory = this.day >= 3 ? 4096 : 2048; // a config change on day 3
    const conf =
      `boot: order=scsi0;net0\ncores: 2\nefidisk0: local-zfs:vm-${this.opts.vmid}-disk-1,efitype=4m,size=528K\n` +
      `memory: ${memory}\nname: demo-guest\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\nostype: l26\n` +
      `scsi0: local-zfs:vm-${this.opts.vmid}-disk-0,size=${Math.round(this.opts.diskSize / (1 << 20))}M\nscsihw: virtio-scsi-single\n` +
      `#qmdump#map:efidisk0:drive-efidisk0:local-zfs:raw:\n#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n`;
    const configs = [{ name: 'qemu-server.conf', data: Buffer.from(conf) }];
    const images = [
      { name: 'drive-efidisk0', path: this.efiPath, size: EFI_DISK_SIZE },
      { name: 'drive-scsi0', path: this.diskPath, size: this.opts.diskSize },
    ];
    const vma = writeVma(
      { uuid: randomBytes(16), ctime: when, configs, devices: images.map((i) => ({ name: i.name, size: i.size })) },
      imageClusters(images, { sizeCheck: 'exact' }),
    );
    await pipeline(Readable.from(compress(vma, 'zst', { threads: this.opts.zstdThreads ?? 1 })), fs.createWriteStream(archivePath, { flags: 'wx' }));
    fs.writeFileSync(
      path.join(this.opts.dir, logFileName(fileName)),
      `INFO: Starting Backup of VM ${this.opts.vmid} (qemu)\nINFO: creating vzdump archive '${fileName}'\nINFO: Finished Backup of VM ${this.opts.vmid}\n`,
    );
    return { day: this.day, archivePath, archiveSize: fs.statSync(archivePath).size, timestamp, images, configs };
  }
}

function randomFill(buf: Buffer, rnd: () => number): void {
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE(Math.floor(rnd() * 4294967296), i);
}
