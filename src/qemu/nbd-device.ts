/**
 * Attaching an NBD export (virtnbdmap's) to a kernel NBD device with qemu-nbd, as the original
 * does (docs/behaviour.md, "virtnbdmap"). Needs the nbd kernel module, so it is not exercised
 * where there is none (`--listen-only` serves without a device). No replay of incrementals is
 * needed afterwards: the server already serves the merged chain.
 */
import { spawn } from "node:child_process";
import { constants as fsConstants, existsSync } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

/** `which`: the first executable `name` on PATH, or null. */
export async function which(name: string, path = process.env["PATH"] ?? "/usr/bin:/bin"): Promise<string | null> {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export interface RunResult {
  code: number | null;
  stderr: string;
}

function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    p.on("error", (e) => resolve({ code: -1, stderr: e.message }));
    p.on("close", (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

/** The original's device checks (docs/cli.md, "virtnbdmap checks"); returns the error lines. */
export function deviceErrors(device: string): string[] {
  const errors: string[] = [];
  if (!device.startsWith("/dev/nbd")) errors.push(`Target device [${device}] seems not to be an NBD device?`);
  if (!existsSync(device)) errors.push(`Target device [${device}] does not exist, please load nbd module: [modprobe nbd]`);
  return errors;
}

/** Host that reaches a listen address (wildcards → loopback). */
export function connectHost(listenAddress: string): string {
  if (listenAddress === "0.0.0.0" || listenAddress === "" || listenAddress === "127.0.0.1") return "127.0.0.1";
  if (listenAddress === "::" || listenAddress === "[::]") return "[::1]";
  return listenAddress.includes(":") && !listenAddress.startsWith("[") ? `[${listenAddress}]` : listenAddress;
}

export interface AttachOptions {
  device: string;
  uri: string;
  readOnly: boolean;
  retries?: number;
  retryDelayMs?: number;
  log: { info(m: string): void; debug(m: string): void };
}

/**
 * `qemu-nbd -c <device> <uri> -f raw [-r]`; "Connection refused" is retried (10 times, 1 s
 * apart), other failures are returned at once (the original kept looping on them).
 */
export async function attachDevice(o: AttachOptions): Promise<RunResult> {
  const args = ["-c", o.device, o.uri, "-f", "raw"];
  if (o.readOnly) args.push("-r");
  o.log.debug(`qemu-nbd ${args.join(" ")}`);
  for (let attempt = 0; ; attempt++) {
    const r = await run("qemu-nbd", args);
    if (r.code === 0) return r;
    if (!/Connection refused/.test(r.stderr) || attempt >= (o.retries ?? 10)) return r;
    o.log.info(`NBD server refused connection, retry [${attempt}]`);
    await new Promise((res) => setTimeout(res, o.retryDelayMs ?? 1000));
  }
}

export function detachDevice(device: string): Promise<RunResult> {
  return run("qemu-nbd", ["-d", device]);
}
