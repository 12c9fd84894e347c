// `Platform.connect`: its defaults come from the environment the supervisor sets; what cannot
// connect fails at once with a typed error.

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError, Platform } from "../src/platform.js";
import { testbed } from "./support.js";

const bed = await testbed();

/** Runs `work` with `env` set in this process's environment, then puts it back. */
async function withEnv<T>(env: Record<string, string | undefined>, work: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
  apply(env);
  try {
    return await work();
  } finally {
    apply(saved);
  }
}

test("with no options the identity and socket come from IKIGAI_SOCKET, IKIGAI_AGENT, IKIGAI_TOKEN", async () => {
  const platform = await withEnv(await bed.agentEnv("from-env"), () => Platform.connect());
  assert.equal(platform.agent, "from-env");
  assert.equal(platform.hello.daemon, "ikigai");
  await platform.ping();
  platform.close();
  await assert.rejects(() => platform.ping(), (e: unknown) => e instanceof IkigaiError && e.code === "closed");
});

test("without IKIGAI_AGENT connect fails with invalid_options, naming the variable", async () => {
  await withEnv({ IKIGAI_AGENT: undefined, IKIGAI_TOKEN: "t" }, () =>
    assert.rejects(() => Platform.connect({ socket: bed.socket }), (e: unknown) => e instanceof IkigaiError && e.code === "invalid_options" && /IKIGAI_AGENT/.test(e.message)),
  );
});

test("a socket nobody listens on fails at once with a retriable unavailable", async () => {
  await assert.rejects(
    () => Platform.connect({ socket: "/nonexistent/daemon.sock", agent: "a", token: "t" }),
    (e: unknown) => e instanceof IkigaiError && e.code === "unavailable" && e.retriable,
  );
});
