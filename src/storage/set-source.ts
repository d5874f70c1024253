/** Read access to a finished backup set: a directory, or zip archives made with `-o -`. */
import type { RandomAccessSource } from "../format/source.js";

export interface SetFile {
  /** Path inside the set, `/`-separated (`sda.full.data`, `checkpoints/virtnbdbackup.0.xml`). */
  name: string;
  size: number;
  mtimeMs: number;
}

export interface BackupSetSource {
  /** The directory or archive path (for messages). */
  readonly location: string;
  list(): Promise<SetFile[]>;
  open(name: string): Promise<RandomAccessSource>;
  readFile(name: string): Promise<Buffer>;
  /** Where a file is, for messages: its path, or `<archive>:<entry>` naming the one archive it is in. */
  shownName(name: string): string;
  /** A real file path for tools that need one (directory sets only). */
  pathOf(name: string): string | null;
  close(): Promise<void>;
}
