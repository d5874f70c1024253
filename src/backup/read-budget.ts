/**
 * How much memory a disk's reads may hold in flight: what keeps the source busy, and no more
 * (each MiB of it is a MiB of peak RSS).
 *
 * - Local (unix socket): `READ_BUDGET`, two 4 MiB reads, one arriving while the other is
 *   copied on. More does not go faster: with direct writes, 16 MiB used less CPU than 32 MiB
 *   (data read from the socket is copied on before it leaves the CPU caches), and 8 MiB as
 *   little as 16 (2026-12-05, user+sys of a 2 GiB full alike); with -z the lz4 lanes hold their
 *   own buffers.
 * - Over TCP (remote): a read waits a round trip, so what keeps the link busy is the
 *   bandwidth-delay product. `linkReadBudget` sizes it from the round trip the NBD negotiation
 *   measured: `READ_BUDGET` for what is being copied on, plus `LINK_RATE` × round trip on the
 *   way, at most `MAX_READ_BUDGET`. A LAN (< 1 ms) keeps the local 8–9 MiB; a 20 ms link gets
 *   28 MiB.
 *
 * Measured through the bench's 20 ms proxy (bench/remote-delay.ts, 2 GiB, 2 connections, 1 MiB
 * reads, 2026-12-05): on the way were ~20 MiB of 24 (data phase 2.41–2.73 s, peak RSS 117 MiB),
 * ~22.6 of 28 (2.18–2.75 s, 121 MiB), ~21 of 32 (2.11–2.79 s, 125 MiB: the copy held the rest);
 * each read took ~24 ms. On loopback (2 GiB in 1.5–2.4 s either way) 8 MiB moved as fast as 24
 * for 16 MiB less RSS (101 against 117 MiB): the fixed 24 MiB of before only cost memory there.
 */

export const READ_BUDGET = 8 << 20;
/** The rate a link's reads in flight are sized for: ~what a 2 GiB full writes on the bench machine. */
export const LINK_RATE = 1 << 30;
/** The most any disk keeps in flight: a remote run's peak RSS stays under 128 MiB (121–123 at 28). */
export const MAX_READ_BUDGET = 28 << 20;

const MiB = 1 << 20;

/** The read budget for a link of `roundTripMs` (null: not measured, the most). */
export function linkReadBudget(roundTripMs: number | null): number {
  if (roundTripMs === null || !Number.isFinite(roundTripMs)) return MAX_READ_BUDGET;
  const onTheWay = Math.ceil(((Math.max(0, roundTripMs) / 1000) * LINK_RATE) / MiB) * MiB;
  return Math.min(MAX_READ_BUDGET, READ_BUDGET + onTheWay);
}
