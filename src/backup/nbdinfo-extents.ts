/**
 * `-q/--qemu`: block status from `nbdinfo --json --map=<context>` instead of our client,
 * served to the same extent walk so the result is computed exactly as with our client.
 */
import { execa } from "execa";
import type { BlockStatusReply, ExtentSource, NbdClient } from "../nbd/index.js";

interface MapEntry {
  offset: number;
  length: number;
  type: number;
}

async function nbdinfoMap(uri: string, context: string): Promise<MapEntry[]> {
  const r = await execa("nbdinfo", ["--json", `--map=${context}`, uri], { reject: false });
  if (r.exitCode !== 0) throw new Error(`nbdinfo --map=${context} failed: ${String(r.stderr).trim()}`);
  return (JSON.parse(String(r.stdout)) as MapEntry[]).map((e) => ({ offset: e.offset, length: e.length, type: e.type }));
}

export async function nbdinfoExtentSource(client: NbdClient, uri: string, contexts: string[]): Promise<ExtentSource> {
  const maps = new Map<string, MapEntry[]>();
  for (const c of contexts) maps.set(c, await nbdinfoMap(uri, c));
  return {
    size: client.size,
    info: client.info,
    exportName: client.exportName,
    async blockStatus(offset: number, length: number): Promise<BlockStatusReply> {
      const reply: BlockStatusReply = { offset, contexts: new Map() };
      for (const [name, entries] of maps) {
        const flat: number[] = [];
        for (const e of entries) {
          const end = e.offset + e.length;
          if (end <= offset || e.offset >= offset + length) continue;
          const s = Math.max(e.offset, offset);
          flat.push(Math.min(end, offset + length) - s, e.type);
        }
        reply.contexts.set(name, flat);
      }
      return reply;
    },
  };
}
