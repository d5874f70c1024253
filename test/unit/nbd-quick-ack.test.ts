/**
 * TCP_QUICKACK while negotiating (src/nbd/transport.ts quickAck): the addon call on real sockets,
 * and our client asking for it after each option it sends over TCP, never over a unix socket.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { BASE_ALLOCATION, MemoryBackend, NbdClient, NbdServer } from "../../src/nbd/index.js";
import { native } from "../../src/native/index.js";
import { tempDir } from "../helpers/tmp.js";

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** A connected client socket to a throwaway server on `listenOn`; both closed after the test. */
async function connectedSocket(t: TestContext, listenOn: { port: number; host: string } | { path: string }): Promise<net.Socket> {
  const server = net.createServer((s) => s.on("error", () => undefined));
  await new Promise<void>((r) => server.listen(listenOn, r));
  const address = server.address();
  const to = typeof address === "string" ? { path: address } : { port: address!.port, host: "127.0.0.1" };
  const socket = net.connect(to);
  await new Promise<void>((r, j) => socket.once("connect", r).once("error", j));
  t.after(() => {
    socket.destroy();
    server.close();
  });
  return socket;
}

/** Counts the addon's tcpQuickAck calls while `body` runs (the addon object is shared). */
async function countingQuickAcks(body: () => Promise<void>): Promise<number> {
  const original = native.tcpQuickAck;
  let calls = 0;
  native.tcpQuickAck = (fd: number) => {
    calls++;
    return original(fd);
  };
  try {
    await body();
  } finally {
    native.tcpQuickAck = original;
  }
  return calls;
}

describe("TCP_QUICKACK", () => {
  it("is set on a TCP socket, refused quietly on a unix socket, and wants a descriptor", async (t) => {
    assert.equal(native.tcpQuickAck(fdOf(await connectedSocket(t, { port: 0, host: "127.0.0.1" }))), true);
    const dir = await tempDir(t, "vnbt-quickack-");
    assert.equal(native.tcpQuickAck(fdOf(await connectedSocket(t, { path: join(dir, "s.sock") }))), false);
    assert.throws(() => (native.tcpQuickAck as (fd: unknown) => boolean)("x"), TypeError);
  });

  it("our client asks for it after each option over TCP (structured replies, meta context, go), not over a unix socket", async (t) => {
    const server = new NbdServer({ exports: { disk: new MemoryBackend(1 << 20) } });
    const tcp = await server.listen({ port: 0, host: "127.0.0.1" });
    t.after(() => server.close());
    const overTcp = await countingQuickAcks(async () => {
      const c = await NbdClient.open({ target: tcp, exportName: "disk", metaContexts: [BASE_ALLOCATION] });
      await c.disconnect();
    });
    assert.equal(overTcp, 3);

    const dir = await tempDir(t, "vnbt-quickack-");
    const unixServer = new NbdServer({ exports: { disk: new MemoryBackend(1 << 20) } });
    const unix = await unixServer.listen({ path: join(dir, "nbd.sock") });
    t.after(() => unixServer.close());
    const overUnix = await countingQuickAcks(async () => {
      const c = await NbdClient.open({ target: unix, exportName: "disk", metaContexts: [BASE_ALLOCATION] });
      await c.disconnect();
    });
    assert.equal(overUnix, 0);
  });
});
