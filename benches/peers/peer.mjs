// `node peer.mjs <graphile-worker|pg-boss> <drain|flow>`: runs one peer queue on one workload
// against the empty database PEER_URL and prints one JSON line on stdout.
import { reportLine } from "./report.mjs";
import { drain, flow } from "./workloads.mjs";

const PEERS = { "graphile-worker": "./graphile-worker.mjs", "pg-boss": "./pg-boss.mjs" };
const WORKLOADS = { drain, flow };

function fail(error) {
  process.stderr.write(`peer: ${error?.stack ?? error}\n`);
  process.exit(1);
}

function envInt(name, fallback) {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
}

async function main() {
  const [system, workload] = process.argv.slice(2);
  if (!PEERS[system] || !WORKLOADS[workload]) {
    throw new Error("usage: node peer.mjs <graphile-worker|pg-boss> <drain|flow>");
  }
  const url = process.env.PEER_URL;
  if (!url) throw new Error("PEER_URL is not set");
  const concurrency = envInt("PEER_CONCURRENCY", 8);
  const params = {
    tasks: envInt("PEER_TASKS", 50000),
    producers: envInt("PEER_PRODUCERS", 4),
    window: envInt("PEER_WINDOW", 16),
    seconds: envInt("PEER_SECONDS", 20),
  };
  const { open } = await import(PEERS[system]);
  const peer = await open({ url, concurrency, fail });
  const result = await WORKLOADS[workload](peer, params);
  await peer.close();
  process.stdout.write(`${reportLine({ system, workload, concurrency, settings: peer.settings, ...result })}\n`);
  process.exit(0);
}

main().catch(fail);
