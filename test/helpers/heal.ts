/** Shared by the checkpoint-heal tests: runs, points, restores of every point (docs/behaviour.md, "Checkpoint drift"). */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TestDomain } from "./domains.js";
import { assertOk, captureTruth, imageHash, logLines, ourBackup, ourRestore, sh, type ToolResult } from "./our-tool.js";

export const URI = "qemu:///system";
export const virsh = (...args: string[]) => sh("virsh", ["-c", URI, ...args]);

export interface Point {
  checkpoint: string;
  truth: Record<string, string>;
}

export function backup(d: TestDomain, set: string, level: string, extra: string[] = []): Promise<ToolResult> {
  return ourBackup(["-d", d.name, "-l", level, "-o", set, "-n", ...extra]);
}

/** The checkpoint an online full/inc created (its log line). */
export function createdCheckpoint(r: ToolResult): string {
  const m = /Using checkpoint name: \[([^\]]+)\]/.exec(r.stderr);
  assert.ok(m, `no checkpoint created:\n${r.stderr}`);
  return m[1]!;
}

/** An online auto run that must work; returns the point it made. */
export async function autoPoint(d: TestDomain, set: string, what: string, extra: string[] = []): Promise<Point & { run: ToolResult }> {
  const run = assertOk(await backup(d, set, "auto", extra), what);
  return { checkpoint: createdCheckpoint(run), truth: await captureTruth(d), run };
}

/** WARNING lines besides the one every run of these agent-less test domains logs. */
export function warnings(r: ToolResult): string[] {
  return logLines(r, "WARNING").filter((l) => !/Guest agent is not responding/.test(l));
}

/** Every point with --until, and the latest without, restored bit-exact by our virtnbdrestore. */
export async function restoresEveryPoint(work: string, set: string, points: Point[], extra: string[] = []): Promise<void> {
  const runs = [...points.map((p, i) => ({ p, args: ["--until", p.checkpoint], out: join(work, `until-${i}`) })), { p: points.at(-1)!, args: [], out: join(work, "latest") }];
  for (const { p, args, out } of runs) {
    assertOk(await ourRestore(["-i", set, "-o", out, "-n", ...args, ...extra]), `restore ${args.join(" ") || "latest"}`);
    for (const [disk, hash] of Object.entries(p.truth)) {
      assert.equal(await imageHash(join(out, `${disk}.qcow2`), "qcow2"), hash, `${disk} at ${args.join(" ") || "latest"} (${p.checkpoint})`);
    }
  }
}

export async function check(d: TestDomain, set: string, extra: string[] = []): Promise<ToolResult> {
  return ourBackup(["-d", d.name, "-o", set, "--check", "-n", ...extra]);
}

export async function removeBitmap(d: TestDomain, target: string, name: string): Promise<void> {
  const { node } = await d.blockNode(target);
  await d.domain.qemuMonitorCommand(JSON.stringify({ execute: "block-dirty-bitmap-remove", arguments: { node, name } }));
}

