import { test } from "node:test";
import assert from "node:assert/strict";
import type { FileHandle } from "node:fs/promises";
import { writeFullyAt } from "../../src/util/write-fully.js";

/** A file that takes at most `step` bytes per write (0: none at all). */
function shortWrites(step: number): { fh: FileHandle; file: Buffer; calls: number } {
  const state = { file: Buffer.alloc(64), calls: 0, fh: null as unknown as FileHandle };
  state.fh = {
    write: async (data: Uint8Array, offset: number, length: number, position: number) => {
      state.calls++;
      const n = Math.min(step, length);
      state.file.set(data.subarray(offset, offset + n), position);
      return { bytesWritten: n, buffer: data };
    },
  } as unknown as FileHandle;
  return state;
}

test("writeFullyAt writes every byte at its position through short writes", async () => {
  const s = shortWrites(3);
  const data = Buffer.from("0123456789abcdef");
  await writeFullyAt(s.fh, data, 10, 11);
  assert.equal(s.file.subarray(10, 21).toString(), "0123456789a");
  assert.equal(s.file[21], 0, "nothing past length");
  assert.equal(s.calls, 4);
});

test("writeFullyAt fails on a write that makes no progress", async () => {
  await assert.rejects(writeFullyAt(shortWrites(0).fh, Buffer.alloc(8, 1), 40), /no progress at offset 40/);
});
