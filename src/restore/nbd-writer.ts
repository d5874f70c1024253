/** Our NBD client as the restore engine's block writer. */
import type { NbdClient } from "../nbd/index.js";
import type { BlockWriter } from "../pipeline/types.js";

export class NbdBlockWriter implements BlockWriter {
  constructor(private readonly client: NbdClient) {}
  write(offset: number, data: Buffer): Promise<void> {
    return this.client.write(offset, data);
  }
  zero(offset: number, length: number): Promise<void> {
    return this.client.writeZeroes(offset, length);
  }
  flush(): Promise<void> {
    return this.client.info.canFlush ? this.client.flush() : Promise.resolve();
  }
}
