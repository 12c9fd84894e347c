// The drain and flow workloads, run the same way against either peer's adapter.
//
// An adapter has: insert(payloads) (bulk), producer(window) -> { add(payload), close() },
// work(onJob) (starts the workers, resolves once they are listening and have fetched once),
// pending() (jobs the peer's tables still hold unfinished) and close().
import { nowUs, percentileMs, waitFor } from "./stats.mjs";

const range = (n) => Array.from({ length: n }, (_, i) => i);

/** Waits until every job handled has its completion recorded in the database. */
const recorded = (peer) => waitFor("completions to reach the database", async () => (await peer.pending()) === 0, 2);

/** Inserts `tasks` jobs in bulk, then times the workers from the first job taken to the last recorded. */
export async function drain(peer, { tasks }) {
  await peer.insert(range(tasks).map((n) => ({ n })));
  let handled = 0;
  let startedUs = null;
  await peer.work(() => {
    startedUs ??= nowUs();
    handled++;
  });
  await waitFor("every job to be handled", () => handled >= tasks, 1);
  await recorded(peer);
  return { tasks, seconds: (nowUs() - startedUs) / 1e6 };
}

/** Producers keep `window` adds each in flight for `seconds`; measures completions and push-to-start. */
export async function flow(peer, { producers, window, seconds }) {
  const latenciesUs = [];
  let periodEndUs = Infinity;
  let inPeriod = 0;
  await peer.work(({ t }) => {
    const now = nowUs();
    latenciesUs.push(now - t);
    if (now <= periodEndUs) inPeriod++;
  });
  const clients = await Promise.all(range(producers).map(() => peer.producer(window)));
  periodEndUs = nowUs() + seconds * 1e6;
  let sent = 0;
  const lane = async (client) => {
    while (nowUs() < periodEndUs) {
      await client.add({ t: nowUs() });
      sent++;
    }
  };
  await Promise.all(clients.flatMap((client) => range(window).map(() => lane(client))));
  await waitFor("the backlog to be handled", () => latenciesUs.length >= sent, 1);
  await recorded(peer);
  await Promise.all(clients.map((client) => client.close()));
  return {
    tasks: inPeriod,
    seconds,
    p50_ms: percentileMs(latenciesUs, 50),
    p99_ms: percentileMs(latenciesUs, 99),
  };
}
