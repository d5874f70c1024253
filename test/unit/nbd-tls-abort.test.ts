/**
 * A TLS handshake whose socket is closed under it (an abort, a handshake timeout, the extra
 * connections dropped when the first one failed) rejects instead of waiting forever: a silent
 * server, and the plain socket destroyed mid-handshake.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startClientTls } from "../../src/nbd/tls.js";
import { NbdConnectionError } from "../../src/nbd/errors.js";
import { makeTlsCerts } from "../helpers/nbd-servers.js";

test("startClientTls rejects once the socket under the handshake is closed", { timeout: 20_000 }, async (t) => {
  const certDir = await makeTlsCerts(t);
  const held: net.Socket[] = [];
  const server = net.createServer((s) => void held.push(s.on("error", () => undefined))); // never answers
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const socket = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r, j) => socket.once("connect", r).once("error", j));
  const handshake = startClientTls(socket, { certDir }, "127.0.0.1");
  setTimeout(() => socket.destroy(), 50);
  await assert.rejects(handshake, (e: unknown) => e instanceof NbdConnectionError && /closed during the TLS handshake/.test((e as Error).message));
});
