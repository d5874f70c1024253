/**
 * Instant boot: qemu-system-x86_64 (TCG) boots from the mapped export. The disk is a tiny
 * bootable image built here: a boot sector whose code reads LBA 2048 (1 MiB) with BIOS int 13h
 * (extended read) and prints the string found there to the serial port. The full backup holds
 * the boot sector and the message "full"; the incremental changes only the message. So the
 * marker on the serial console shows that the BIOS booted through virtnbdmap's NBD server and that
 * the chain was merged (plain files for the full alone, lz4 in zips for full + inc).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildStream } from "../helpers/streams.js";
import { fullExtents, writeStoredZip } from "../helpers/map-model.js";
import { startMap } from "../helpers/map-run.js";
import { tempDir } from "../helpers/tmp.js";

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

/** 512-byte boot sector (real mode, loaded at 0x7c00), assembled by hand. */
function bootSector(): Buffer {
  const code = [
    0xfa, //                 cli
    0xfc, //                 cld
    0x31, 0xc0, //           xor ax, ax
    0x8e, 0xd8, //           mov ds, ax
    0xbe, 0x23, 0x7c, //     mov si, dap (0x7c23)
    0xb4, 0x42, //           mov ah, 0x42        ; extended read, dl = boot drive from the BIOS
    0xcd, 0x13, //           int 0x13
    0xbe, 0x00, 0x80, //     mov si, 0x8000      ; the sector just read
    0x73, 0x03, //           jnc print
    0xbe, 0x33, 0x7c, //     mov si, err (0x7c33)
    0xba, 0xf8, 0x03, //     print: mov dx, 0x3f8 ; COM1
    0xac, //                 next: lodsb
    0x84, 0xc0, //           test al, al
    0x74, 0x03, //           jz done
    0xee, //                 out dx, al
    0xeb, 0xf8, //           jmp next
    0xf4, //                 done: hlt
    0xeb, 0xfd, //           jmp done
    // dap (offset 0x23): size 16, count 1, buffer 0000:8000, LBA 2048
    0x10, 0x00, 0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  ];
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector, 0);
  assert.equal(code.length, 0x33);
  sector.write("DISK READ ERROR\r\n\0", 0x33, "latin1");
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

function message(text: string): Buffer {
  const b = Buffer.alloc(4096);
  b.write(`${text}\r\n\0`, 0, "latin1");
  return b;
}

/** Boots qemu from `uri` until `marker` shows up on the serial console (or the timeout). */
async function bootUntil(dir: string, uri: string, marker: string, timeoutMs = 30_000): Promise<string> {
  const log = join(dir, `serial-${Date.now()}.log`);
  await writeFile(log, "");
  const qemu = spawn(
    "qemu-system-x86_64",
    ["-machine", "pc", "-accel", "tcg", "-m", "64", "-display", "none", "-nodefaults", "-no-reboot",
      "-serial", `file:${log}`, "-drive", `file=${uri},format=raw,if=ide`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  qemu.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => qemu.once("exit", () => r()));
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await readFile(log, "latin1");
      if (text.includes(marker) || text.includes("DISK READ ERROR")) return text;
      if (qemu.exitCode !== null) throw new Error(`qemu exited (${qemu.exitCode}): ${stderr}`);
      if (Date.now() > deadline) throw new Error(`no marker after ${timeoutMs / 1000} s; serial: ${JSON.stringify(text)}; qemu: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    qemu.kill("SIGKILL");
    await exited;
  }
}

test("instant boot: qemu boots from the mapped chain and prints the marker it reads through it", async (t) => {
  const dir = await tempDir(t, "vnbt-map-boot-");
  const full = [{ start: 0, data: Buffer.concat([bootSector(), Buffer.alloc(4096 - 512)]) }, { start: MiB, data: message("VIRTNBD-INSTANT-BOOT full") }];
  const inc = [{ start: MiB, data: message("VIRTNBD-INSTANT-BOOT incremental") }];
  const incMeta = { incremental: true, checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0" };

  // The full alone, plain stream file.
  const fullPath = join(dir, "sda.full.data");
  await writeFile(fullPath, await buildStream(fullExtents(SIZE, full), { virtualSize: SIZE }));
  const m1 = await startMap(t, [fullPath]);
  const out1 = await bootUntil(dir, m1.uri, "VIRTNBD-INSTANT-BOOT full");
  assert.match(out1, /VIRTNBD-INSTANT-BOOT full\r\n/);
  assert.equal((await m1.stop()).code, 0);

  // Full + inc, lz4-compressed, each in its own zip (as `-o -` writes them).
  const fullZip = join(dir, "full.zip");
  const incZip = join(dir, "inc.zip");
  await writeStoredZip(fullZip, [{ name: "sda.full.data", data: await buildStream(fullExtents(SIZE, full), { virtualSize: SIZE, compressLevel: 2 }) }]);
  await writeStoredZip(incZip, [{ name: "sda.inc.virtnbdbackup.1.data", data: await buildStream(inc, { virtualSize: SIZE, compressLevel: 2, meta: incMeta }) }]);
  const m2 = await startMap(t, [fullZip, incZip]);
  const out2 = await bootUntil(dir, m2.uri, "VIRTNBD-INSTANT-BOOT incremental");
  assert.match(out2, /VIRTNBD-INSTANT-BOOT incremental\r\n/);
  assert.equal((await m2.stop()).code, 0);
});
