// graphile-worker adapter: its documented high-throughput settings (local queue, batched completion).
import { EventEmitter, once } from "node:events";
import { Logger, makeWorkerUtils, run } from "graphile-worker";
import { describe } from "./report.mjs";

const TASK = "bench";
const PENDING_SQL = "select count(*)::int as n from graphile_worker._private_jobs";

const errorsOnly = () => (level, message) => {
  if (level === "error") process.stderr.write(`graphile-worker: ${message}\n`);
};

export async function open({ url, concurrency, fail }) {
  const logger = new Logger(errorsOnly);
  const options = {
    concurrency,
    maxPoolSize: concurrency + 1,
    preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
  };
  const utils = await makeWorkerUtils({ connectionString: url, logger });
  await utils.migrate();
  let runner = null;
  return {
    settings: `run: ${describe(options)} noHandleSignals=true pollInterval=2000(default; LISTEN/NOTIFY wakes) | bulk: WorkerUtils.addJobs | add: WorkerUtils.addJob, maxPoolSize=window per producer`,
    insert: (payloads) => utils.addJobs(payloads.map((payload) => ({ identifier: TASK, payload }))),
    async producer(window) {
      const producer = await makeWorkerUtils({ connectionString: url, logger, maxPoolSize: window });
      return { add: (payload) => producer.addJob(TASK, payload), close: () => producer.release() };
    },
    async work(onJob) {
      const events = new EventEmitter();
      for (const name of ["job:error", "worker:fatalError", "pool:fatalError"]) {
        events.on(name, ({ error }) => fail(error));
      }
      const ready = Promise.all([once(events, "pool:listen:success"), once(events, "localQueue:getJobs:complete")]);
      runner = await run({
        ...options,
        connectionString: url,
        logger,
        events,
        noHandleSignals: true,
        parsedCronItems: [],
        taskList: { [TASK]: async (payload) => onJob(payload) },
      });
      runner.promise.catch(fail);
      await ready;
    },
    pending: () => utils.withPgClient(async (client) => (await client.query(PENDING_SQL)).rows[0].n),
    async close() {
      await runner?.stop();
      await utils.release();
    },
  };
}
