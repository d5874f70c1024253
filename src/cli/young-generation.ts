/**
 * V8's young generation kept at the size it has once the command's code is loaded. V8 doubles
 * it (up to 16 MiB per semi-space) whenever much survives a scavenge, which a copy with reads
 * and writes in flight always has, and never shrinks it again: the data commands peaked 5-10
 * MiB higher for it. The growth factor is read whenever the space would grow, so this takes
 * effect without node command-line flags. Set after the bundle is loaded, not before: loading
 * it with 1 MiB semi-spaces cost ~16 ms of scavenges at every start (README, "Where the memory
 * goes").
 */
import { setFlagsFromString } from "node:v8";

export function keepYoungGenerationSize(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}
