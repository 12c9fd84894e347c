// pg-boss adapter: batch-fetching workers woken by LISTEN/NOTIFY, with maintenance and scheduling off.
import { PgBoss } from "pg-boss";
import { describe } from "./report.mjs";
import { waitFor } from "./stats.mjs";

const QUEUE = "bench";
const PENDING_SQL = `select count(*)::int as n from pgboss.job where name = '${QUEUE}' and state < 'completed'`;
const QUIET = { supervise: false, schedule: false, registerInstance: false, openTelemetry: { enabled: false } };

/** Starts a PgBoss instance whose errors fail the run and whose warnings go to stderr. */
async function startBoss(options, fail) {
  const boss = new PgBoss({ ...options, ...QUIET });
  boss.on("error", fail);
  boss.on("warning", ({ message }) => process.stderr.write(`pg-boss warning: ${message}\n`));
  return boss.start();
}

export async function open({ url, concurrency, fail }) {
  const instance = { max: concurrency + 2, useListenNotify: true };
  const queue = { notify: true };
  const work = {
    localConcurrency: concurrency,
    batchSize: 100,
    burstWhenBatchFull: true,
    pollingIntervalSeconds: 0.5,
    notifyPollingIntervalSeconds: 0.5,
  };
  const boss = await startBoss({ connectionString: url, ...instance }, fail);
  await boss.createQueue(QUEUE, queue);
  return {
    settings: `new PgBoss: ${describe({ ...instance, ...QUIET })} | createQueue: ${describe(queue)} | work: ${describe(work)} | bulk: insert([...]) | add: send(), max=window per producer`,
    insert: (payloads) => boss.insert(QUEUE, payloads.map((data) => ({ data }))),
    async producer(window) {
      const producer = await startBoss({ connectionString: url, max: window, migrate: false }, fail);
      return { add: (data) => producer.send(QUEUE, data), close: () => producer.stop() };
    },
    async work(onJob) {
      await boss.work(QUEUE, work, async (jobs) => jobs.forEach((job) => onJob(job.data)));
      await waitFor("every worker's first fetch", () => boss.getWipData().every((w) => w.lastFetchedOn !== null), 1);
    },
    pending: async () => (await boss.getDb().executeSql(PENDING_SQL)).rows[0].n,
    close: () => boss.stop(),
  };
}
