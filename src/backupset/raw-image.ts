/**
 * Raw images in a set (`-t raw` backups, `--raw` disks: `<disk>.copy.data`) are plain disk
 * images, not streams (docs/backup-set.md): whole sectors, and no `meta ` frame at the start.
 */
import { readExactly, type RandomAccessSource } from "../format/source.js";

const META_MAGIC = "meta ";
const SECTOR = 512;

export async function isRawImage(source: RandomAccessSource): Promise<boolean> {
  const magic = Buffer.alloc(META_MAGIC.length);
  if (source.size >= magic.length) await readExactly(source, magic, 0, magic.length, 0);
  return magic.toString("latin1") !== META_MAGIC && source.size % SECTOR === 0;
}
