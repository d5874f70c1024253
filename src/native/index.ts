/** Loads the project's native addon (lz4 frames, Adler-32; libvirt joins later). */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeAddon {
  /** Bytes a destination buffer needs to hold one lz4 frame of `length` input bytes. */
  lz4CompressBound(length: number): number;
  /** Compresses `src` into one lz4 frame in `dst`; returns the frame length. */
  lz4Compress(src: Uint8Array, dst: Uint8Array, level: number): number;
  lz4CompressAsync(src: Uint8Array, dst: Uint8Array, level: number): Promise<number>;
  /** Decodes exactly one complete lz4 frame (all of `src`), verifying checksums; returns bytes written. */
  lz4Decompress(src: Uint8Array, dst: Uint8Array): number;
  lz4DecompressAsync(src: Uint8Array, dst: Uint8Array): Promise<number>;
  /** zlib adler32 continuing from `previous` (start with 1). */
  adler32(previous: number, buf: Uint8Array, offset?: number, length?: number): number;
}

function findPackageRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package.json not found above ${start}`);
    dir = parent;
  }
  return dir;
}

const addonPath = join(
  findPackageRoot(dirname(fileURLToPath(import.meta.url))),
  "src/native/build/Release/virtnbd.node",
);

function load(): NativeAddon {
  if (!existsSync(addonPath)) {
    throw new Error(`native addon missing: ${addonPath} (run "npm run build:native")`);
  }
  return createRequire(import.meta.url)(addonPath) as NativeAddon;
}

export const native: NativeAddon = load();
