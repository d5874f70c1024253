import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { dropSshLogin, openHypervisor, SessionError, startSshLogin } from "../../src/connect/session.js";
import type { RemoteOptions } from "../../src/connect/remote.js";

const quiet = { info: () => undefined, debug: () => undefined };

function options(uri: string, extra: Partial<RemoteOptions> = {}): RemoteOptions {
  return {
    uri,
    sshUser: null,
    sshPort: 22,
    sshPrivateKey: null,
    nbdPorts: { first: 10809, last: 10809, range: false },
    nbdIp: "",
    tls: false,
    tlsCert: "/nonexistent",
    given: new Set(),
    ...extra,
  };
}

/** A port on 127.0.0.1 that refuses connections (listened on once, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

test("ssh login beside the libvirt login: nothing to start for a local URI or unreadable --tls certificates", () => {
  assert.equal(startSshLogin(options("qemu:///system"), quiet), null);
  assert.equal(startSshLogin(options("qemu+ssh://root@127.0.0.1/system", { tls: true }), quiet), null, "openHypervisor reports the certificates instead");
});

test("ssh login beside the libvirt login: started at once, its failure handed to openHypervisor (or dropped)", async () => {
  const port = await closedPort();
  const o = options(`qemu+ssh://root@127.0.0.1:${port}/system`);
  const lines: string[] = [];
  const login = startSshLogin(o, { info: (m) => lines.push(m), debug: () => undefined });
  assert.ok(login, "a remote URI starts the login");
  // Started before anyone awaits it: the login line is out at once.
  assert.match(lines[0] ?? "", /Connecting remote system \[127\.0\.0\.1\] via ssh/);
  await assert.rejects(openHypervisor(o, null, "backup", quiet, login), (e: unknown) => e instanceof SessionError && /ssh session setup failed/.test(e.message));
  // The libvirt login failed instead: the ssh login is dropped without an unhandled rejection.
  const second = startSshLogin(o, quiet);
  await dropSshLogin(second);
});
