// Runs `mailbox_roundtrip` against a fresh testbed daemon, for measuring by hand:
//   node dist/bench/testbed_roundtrip.js [--messages N] [--window W] [--daemon PATH] [--rounds R]
// (`--daemon target/release/ikigai-daemon` for a release daemon). Prints the bench's JSON line
// for each round.

import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Testbed } from "../test/support.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "100000" },
    window: { type: "string", default: "1024" },
    daemon: { type: "string" },
    rounds: { type: "string", default: "1" },
  },
});

const bench = path.join(path.dirname(fileURLToPath(import.meta.url)), "mailbox_roundtrip.js");
const bed = await Testbed.start(undefined, values.daemon && path.resolve(values.daemon));
try {
  for (let round = 0; round < Number(values.rounds); round++) {
    const [producer, consumer] = [`producer-${round}`, `consumer-${round}`];
    const identity = async (name: string) => `${name}:${await bed.token(name)}`;
    const args = ["--socket", bed.socket, "--producer", await identity(producer), "--consumer", await identity(consumer)];
    const out = execFileSync(process.execPath, [bench, ...args, "--messages", values.messages!, "--window", values.window!]);
    process.stdout.write(out);
  }
} finally {
  await bed.stop();
}
