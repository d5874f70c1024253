/**
 * ExportInfo.roundTripMs / NbdClient.roundTripMs: the quickest option round trip of the
 * negotiation, which a backup over TCP sizes its reads in flight by (src/backup/read-budget.ts).
 * Our NBD server, straight and behind a forwarder that holds the server's bytes for 25 ms.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it, type TestContext } from "node:test";
import { BASE_ALLOCATION, MemoryBackend, NbdClient, NbdServer } from "../../src/nbd/index.js";

const DELAY_MS = 25;

/** A TCP forwarder to `to` that delays what comes back by `ms`; closed after the test. */
async function delayingForwarder(t: TestContext, to: { port: number; host: string }, ms: number): Promise<{ kind: "tcp"; host: string; port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(to);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined).on("close", () => sockets.delete(s));
    }
    client.on("data", (b) => upstream.write(b));
    upstream.on("data", (b) => setTimeout(() => client.writable && client.write(b), ms));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => setTimeout(() => client.destroy(), ms));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { kind: "tcp", host: "127.0.0.1", port: (server.address() as net.AddressInfo).port };
}

describe("NBD negotiation round trip", () => {
  it("is measured per connection: quick straight, at least the delay behind the forwarder, the quickest of several", async (t) => {
    const server = new NbdServer({ exports: { disk: new MemoryBackend(1 << 20) } });
    const tcp = await server.listen({ port: 0, host: "127.0.0.1" });
    t.after(() => server.close());
    if (tcp.kind !== "tcp") throw new Error("expected a TCP target");

    const straight = await NbdClient.open({ target: tcp, exportName: "disk", metaContexts: [BASE_ALLOCATION] });
    const quick = straight.roundTripMs;
    await straight.disconnect();
    assert.ok(quick !== null && quick >= 0 && quick < DELAY_MS, `straight: ${quick} ms`);

    const slow = await delayingForwarder(t, { port: tcp.port, host: tcp.host }, DELAY_MS);
    const delayed = await NbdClient.open({ target: slow, exportName: "disk", metaContexts: [BASE_ALLOCATION], connections: 2, openTogether: true });
    try {
      assert.equal(delayed.connections.length, 2, "our server offers multi-conn");
      const each = delayed.connections.map((c) => c.info.roundTripMs!);
      for (const ms of each) assert.ok(ms >= DELAY_MS - 1 && ms < DELAY_MS + 200, `through the forwarder: ${ms} ms`);
      assert.equal(delayed.roundTripMs, Math.min(...each));
    } finally {
      await delayed.disconnect();
    }
  });
});
