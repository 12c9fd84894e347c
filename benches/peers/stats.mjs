// Measurement helpers shared by both peers: the clock, polling for a condition, percentiles.

const TIMEOUT_MS = 300_000;

/** Microseconds since the epoch, with sub-millisecond resolution. */
export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Checks `done()` (sync or async) every `everyMs` until it is true; throws after 5 minutes. */
export async function waitFor(what, done, everyMs) {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The p-th percentile (nearest rank) of microsecond samples, in ms with 2 decimals. */
export function percentileMs(samplesUs, p) {
  if (samplesUs.length === 0) return null;
  const sorted = Float64Array.from(samplesUs).sort();
  const rank = Math.max(0, Math.ceil((p / 100) * sorted.length) - 1);
  return Number((sorted[rank] / 1000).toFixed(2));
}
