/**
 * Our NBD server checked by real clients: nbdinfo, nbdcopy, qemu-img, qemu-io, qemu
 * (`-drive`), nbdkit's nbd plugin, and our own client through nbdkit.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import {
  BASE_ALLOCATION,
  connect,
  contextExtents,
  FileBackend,
  MemoryBackend,
  NbdServer,
  type NbdBackend,
  type ServerOptions,
} from "../../src/nbd/index.js";
import { pattern } from "../helpers/nbd-wire.js";
import { KiB, MiB, makeTlsCerts, nbdinfoMap, qemuIo, run, startNbdkit } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";

interface Served {
  server: NbdServer;
  socket: string;
  dir: string;
  uri: (name: string) => string;
}

async function serve(t: TestContext, exports: Record<string, NbdBackend>, opts: Partial<ServerOptions> = {}): Promise<Served> {
  const dir = await tempDir(t, "vnbt-nbd-srv-");
  const socket = join(dir, "ours.sock");
  const server = new NbdServer({ exports, ...opts });
  await server.listen({ path: socket });
  t.after(() => server.close());
  return { server, socket, dir, uri: (name) => `nbd+unix:///${name}?socket=${socket}` };
}

/** A memory export with data at a few places and holes elsewhere. */
function sample(size = 64 * MiB): { mem: MemoryBackend; content: Buffer } {
  const mem = new MemoryBackend(size);
  const content = Buffer.alloc(size);
  for (const [off, len, seed] of [
    [0, MiB, 1],
    [5 * MiB + 4 * KiB, 3 * MiB, 2],
    [40 * MiB, 64 * KiB, 3],
    [size - 128 * KiB, 128 * KiB, 4],
  ] as const) {
    if (off + len > size) continue;
    const p = pattern(len, seed);
    mem.write(off, p);
    p.copy(content, off);
  }
  return { mem, content };
}

describe("our nbd server vs real clients", () => {
  it("nbdinfo: export details, --list, --map", async (t) => {
    const { mem } = sample();
    const s = await serve(t, { vda: mem, other: new MemoryBackend(MiB, { readOnly: true, description: "second disk" }) });
    const info = JSON.parse((await run("nbdinfo", ["--json", s.uri("vda")])).stdout) as {
      protocol: string;
      exports: { "export-name": string; "export-size": number; contexts: string[]; is_read_only: boolean; can_multi_conn: boolean; can_flush: boolean; can_trim: boolean; can_zero: boolean; block_size_maximum: number }[];
    };
    assert.match(info.protocol, /newstyle-fixed/);
    const e = info.exports[0]!;
    assert.equal(e["export-name"], "vda");
    assert.equal(e["export-size"], 64 * MiB);
    assert.deepEqual(e.contexts, [BASE_ALLOCATION]);
    assert.equal(e.is_read_only, false);
    assert.equal(e.can_multi_conn, true);
    assert.equal(e.can_flush && e.can_trim && e.can_zero, true);
    assert.equal(e.block_size_maximum, 32 * MiB);
    const list = (await run("nbdinfo", ["--list", "--json", s.uri("")])).stdout;
    const names = (JSON.parse(list) as { exports: { "export-name": string; description?: string }[] }).exports.map((x) => x["export-name"]).sort();
    assert.deepEqual(names, ["other", "vda"]);
    const map = await nbdinfoMap(s.uri("vda"));
    assert.deepEqual(map, [
      { offset: 0, length: MiB, type: 0 },
      { offset: MiB, length: 4 * MiB, type: 3 },
      { offset: 5 * MiB, length: 3 * MiB + 64 * KiB, type: 0 },
      { offset: 8 * MiB + 64 * KiB, length: 32 * MiB - 64 * KiB, type: 3 },
      { offset: 40 * MiB, length: 64 * KiB, type: 0 },
      { offset: 40 * MiB + 64 * KiB, length: 24 * MiB - 192 * KiB, type: 3 },
      { offset: 64 * MiB - 128 * KiB, length: 128 * KiB, type: 0 },
    ]);
    const r = await run("nbdinfo", [s.uri("missing")], { allowFail: true });
    assert.notEqual(r.code, 0);
  });

  it("nbdcopy: copies out of and into our server (multi-conn)", async (t) => {
    const { mem, content } = sample();
    const target = new MemoryBackend(64 * MiB);
    const s = await serve(t, { src: mem, dst: target });
    const out = join(s.dir, "out.raw");
    await run("nbdcopy", ["--connections=4", s.uri("src"), out]);
    assert.ok((await readFile(out)).equals(content));
    await run("nbdcopy", [out, s.uri("dst")]);
    const back = Buffer.alloc(64 * MiB);
    target.read(0, back.length, back);
    assert.ok(back.equals(content));
    // Sparse copy: holes stayed holes in the target.
    assert.ok(target.allocatedBytes < 8 * MiB, `${target.allocatedBytes} bytes allocated`);
  });

  it("qemu-img: info, compare, convert (qcow2 result keeps the holes)", async (t) => {
    const { mem, content } = sample();
    const s = await serve(t, { sda: mem });
    const raw = join(s.dir, "content.raw");
    await writeFile(raw, content);
    const info = JSON.parse((await run("qemu-img", ["info", "--output=json", s.uri("sda")])).stdout) as { "virtual-size": number };
    assert.equal(info["virtual-size"], 64 * MiB);
    const same = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", s.uri("sda"), raw]);
    assert.match(same.stdout, /Images are identical/);
    content[40 * MiB + 5] ^= 0xff;
    await writeFile(raw, content);
    const diff = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", s.uri("sda"), raw], { allowFail: true });
    assert.equal(diff.code, 1);
    assert.match(diff.stdout, /Content mismatch at offset 41943040/);
    const q = join(s.dir, "copy.qcow2");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", s.uri("sda"), q]);
    const m = JSON.parse((await run("qemu-img", ["map", "--output=json", q])).stdout) as { start: number; length: number; data: boolean }[];
    const dataBytes = m.filter((e) => e.data).reduce((a, e) => a + e.length, 0);
    assert.ok(dataBytes <= 5 * MiB, `qcow2 copy has ${dataBytes} data bytes`);
    assert.match((await run("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", s.uri("sda"), q])).stdout, /identical/);
  });

  it("qemu-io: write, read back, zero, discard, flush", async (t) => {
    const mem = new MemoryBackend(16 * MiB);
    const s = await serve(t, { d: mem });
    const out = await qemuIo(s.uri("d"), "raw", [
      "write -P 0xa5 1M 3M",
      "write -P 0x5a -f 12k 4k",
      "read -P 0xa5 1M 3M",
      "read -P 0x5a 12k 4k",
      "write -z 2M 64k",
      "read -P 0 2M 64k",
      "discard 3M 64k",
      "flush",
    ]);
    assert.match(out, /wrote 3145728\/3145728 bytes at offset 1048576/);
    assert.doesNotMatch(out, /verification failed/i);
    const b = Buffer.alloc(4);
    mem.read(1 * MiB, 4, b);
    assert.deepEqual(b, Buffer.alloc(4, 0xa5));
    mem.read(2 * MiB, 4, b);
    assert.deepEqual(b, Buffer.alloc(4));
    assert.ok(mem.flushes >= 2, "FUA write and flush reach the backend");
  });

  it("qemu as a -drive: reads and writes through the guest block layer (HMP qemu-io)", async (t) => {
    const { mem, content } = sample(16 * MiB);
    const s = await serve(t, { hd: mem });
    const cmds = [
      `qemu-io d0 "read -P ${content[0]} 0 1"`,
      'qemu-io d0 "write -P 0x3c 8M 256k"',
      'qemu-io d0 "read -P 0x3c 8M 256k"',
      'qemu-io d0 "flush"',
      "quit",
    ];
    const out = await new Promise<string>((resolve, reject) => {
      const q = spawn("qemu-system-x86_64", [
        "-machine", "none", "-nodefaults", "-display", "none", "-no-user-config",
        "-drive", `if=none,id=d0,format=raw,file=${s.uri("hd")}`,
        "-monitor", "stdio",
      ]);
      let text = "";
      q.stdout.on("data", (d: Buffer) => (text += d.toString()));
      q.stderr.on("data", (d: Buffer) => (text += d.toString()));
      const timer = setTimeout(() => q.kill("SIGKILL"), 30000);
      q.on("error", reject);
      q.on("exit", () => {
        clearTimeout(timer);
        resolve(text);
      });
      q.stdin.end(cmds.join("\n") + "\n");
    });
    assert.match(out, /read 1\/1 bytes at offset 0/);
    assert.match(out, /wrote 262144\/262144 bytes at offset 8388608/);
    assert.match(out, /read 262144\/262144 bytes at offset 8388608/);
    assert.doesNotMatch(out, /verification failed|error/i);
    const b = Buffer.alloc(256 * KiB);
    mem.read(8 * MiB, b.length, b);
    assert.ok(b.equals(Buffer.alloc(256 * KiB, 0x3c)));
  });

  it("nbdkit's nbd plugin in front of our server; our client through it", async (t) => {
    const { mem, content } = sample();
    const s = await serve(t, { sda: mem });
    const k = await startNbdkit(t, { plugin: "nbd", args: [`socket=${s.socket}`, "export=sda"], exportName: "front" });
    const out = join(s.dir, "via-nbdkit.raw");
    await run("nbdcopy", [`nbd+unix:///front?socket=${k.socket}`, out]);
    assert.ok((await readFile(out)).equals(content));
    const c = await connect({ uri: `nbd+unix:///front?socket=${k.socket}`, metaContexts: [BASE_ALLOCATION], intervalMs: 1 });
    t.after(() => c.close());
    const ext = [];
    for await (const e of contextExtents(c, BASE_ALLOCATION)) ext.push(e);
    assert.deepEqual(ext.filter((e) => e.flags === 0).map((e) => e.offset), [0, 5 * MiB, 40 * MiB, 64 * MiB - 128 * KiB]);
    assert.ok((await c.read(5 * MiB, 4 * MiB)).equals(content.subarray(5 * MiB, 9 * MiB)));
    await c.write(0, Buffer.alloc(4096, 0xee));
    await c.flush();
    const b = Buffer.alloc(4096);
    mem.read(0, 4096, b);
    assert.ok(b.equals(Buffer.alloc(4096, 0xee)));
    await c.disconnect();
  });

  it("serves a raw file (FileBackend), checked with qemu-img compare", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-srv-");
    const path = join(dir, "disk.raw");
    const content = pattern(8 * MiB, 77);
    await writeFile(path, content);
    const fb = await FileBackend.open(path);
    t.after(() => fb.close());
    const s = await serve(t, { f: fb });
    await qemuIo(s.uri("f"), "raw", ["write -P 0x01 4096 4096", "flush"]);
    content.fill(1, 4096, 8192);
    const ref = join(dir, "ref.raw");
    await writeFile(ref, content);
    assert.match((await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", s.uri("f"), ref])).stdout, /identical/);
    assert.ok((await readFile(path)).equals(content));
  });

  it("TLS: nbdinfo and our client over STARTTLS; plain text refused", async (t) => {
    const pki = await makeTlsCerts(t);
    const { mem, content } = sample(8 * MiB);
    const s = await serve(t, { sec: mem }, { tls: { certDir: pki, required: true } });
    const r = await run("nbdinfo", [`nbds+unix:///sec?socket=${s.socket}&tls-certificates=${pki}`]);
    assert.match(r.stdout, /with TLS/);
    const c = await connect({ uri: s.uri("sec"), tls: { certDir: pki }, metaContexts: [BASE_ALLOCATION], intervalMs: 1 });
    t.after(() => c.close());
    assert.equal(c.info.tls, true);
    assert.ok((await c.read(0, MiB)).equals(content.subarray(0, MiB)));
    await c.disconnect();
    await assert.rejects(connect({ uri: s.uri("sec"), intervalMs: 1 }), /requires TLS/);
    const plain = await run("nbdinfo", [s.uri("sec")], { allowFail: true });
    assert.notEqual(plain.code, 0);
  });

  it("listens on TCP too (nbdinfo, qemu-img, our client)", async (t) => {
    const { mem, content } = sample(8 * MiB);
    const server = new NbdServer({ exports: { tcp: mem } });
    const target = await server.listen({ port: 0, host: "127.0.0.1" });
    t.after(() => server.close());
    assert.equal(target.kind, "tcp");
    const port = target.kind === "tcp" ? target.port : 0;
    const uri = `nbd://127.0.0.1:${port}/tcp`;
    assert.match((await run("nbdinfo", [uri])).stdout, /export-size: 8388608/);
    const dir = await tempDir(t, "vnbt-nbd-srv-");
    const ref = join(dir, "ref.raw");
    await writeFile(ref, content);
    assert.match((await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", uri, ref])).stdout, /identical/);
    const c = await connect({ uri, metaContexts: [BASE_ALLOCATION], connections: 2, intervalMs: 1 });
    t.after(() => c.close());
    assert.equal(c.connections.length, 2);
    assert.ok((await c.read(0, 8 * MiB)).equals(content));
    await c.disconnect();
  });
});
