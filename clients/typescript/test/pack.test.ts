// Publishable: the tarball of `npm pack` installs into an empty project with npm, and the
// README's five-line agent runs there against the daemon.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { testbed, packageDir, uniqueName, waitFor } from "./support.js";

/** The README's five-line agent. */
const AGENT = `import { Agent } from "ikigai/agent";
const agent = await Agent.start();
await agent.runQueue("greetings", async (task) => {
  return { greeting: \`hello, \${task.payload.name}\` };
});
`;

const bed = await testbed();
const project = mkdtempSync(path.join(tmpdir(), "ikigai-pack-"));
after(() => rmSync(project, { recursive: true, force: true }));

/** Type-checks `source` as a TypeScript agent of the project, against the installed declarations. */
function typeCheck(source: string): void {
  writeFileSync(path.join(project, "agent.ts"), source);
  const tsconfig = {
    compilerOptions: { module: "nodenext", target: "es2022", strict: true, noEmit: true, typeRoots: [path.join(packageDir, "node_modules/@types")], types: ["node"] },
    files: ["agent.ts"],
  };
  writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify(tsconfig));
  execFileSync(process.execPath, [path.join(packageDir, "node_modules/typescript/bin/tsc"), "-p", project], { encoding: "utf8" });
}

const npm = (args: string[], cwd: string) =>
  execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });

test("the packed tarball installs into an empty project, type-checks, and its agent serves a queue", async () => {
  // dist/ is built by `npm test` (pretest); the tarball takes only dist/src and the README.
  npm(["pack", "--ignore-scripts", "--pack-destination", project], packageDir);
  const tarball = readdirSync(project).find((file) => file.endsWith(".tgz"))!;
  const listing = execFileSync("tar", ["-tzf", path.join(project, tarball)], { encoding: "utf8" });
  assert.match(listing, /package\/dist\/src\/platform\.d\.ts/);
  assert.match(listing, /package\/dist\/src\/agent\.js/);
  assert.doesNotMatch(listing, /dist\/test\//);

  writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "my-agent", private: true, type: "module" }));
  npm(["install", "--prefer-offline", `./${tarball}`], project);
  writeFileSync(path.join(project, "agent.js"), AGENT);
  typeCheck(AGENT);

  const name = uniqueName("greeter");
  const child = spawn(process.execPath, ["agent.js"], {
    cwd: project,
    env: { ...process.env, ...(await bed.agentEnv(name)) },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = once(child, "exit");
  const admin = await bed.admin();
  await admin.queue("greetings").push({ name: "world" });
  const [task] = await waitFor(async () => {
    const { tasks } = await admin.queue("greetings").list({ state: "completed" });
    return tasks.length > 0 && tasks;
  }, 10_000);
  assert.deepEqual(task!.result, { greeting: "hello, world" });
  child.kill("SIGTERM");
  assert.deepEqual(await exited, [0, null]);
});
