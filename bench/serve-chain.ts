/**
 * For bench/map-read.ts: a chain served the way `virtnbdrestore --live` serves it to qemu, our
 * NBD server reading the ChainBackend directly (no nbdkit in front), here on TCP so the same
 * clients read it. `node --import tsx bench/serve-chain.ts PORT FILE[,FILE…]`; SIGTERM ends it.
 */
import { loadChain } from "../src/chain/chain-loader.js";
import { ChainBackend } from "../src/chain/chain-backend.js";
import { DecodedCache } from "../src/chain/decoded-cache.js";
import { NbdServer } from "../src/nbd/server.js";

const [port, files] = process.argv.slice(2);
const chain = await loadChain(files!.split(","));
const compressed = chain.members.some((m) => m.compressed);
const cache = compressed ? await DecodedCache.create({ maxBytes: 4 * 1024 ** 3 }) : null;
const backend = new ChainBackend(chain.index, chain.sources, { ...(cache ? { decodedCache: cache } : {}) });
const server = new NbdServer({ exports: { sda: backend } });
await server.listen({ port: Number(port), host: "127.0.0.1" });
process.once("SIGTERM", () => {
  void server.close().then(async () => {
    await cache?.close();
    await chain.close();
    process.exit(0);
  });
});
