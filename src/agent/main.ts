#!/usr/bin/env node
// cni-agent: the node agent's entry point (configuration from the environment, see README.md).
import { errorMessage } from "../shared/errors.js";
import { logger, rootLogger } from "../shared/log.js";
import { Agent } from "./agent.js";
import { agentHelp, agentUnknownVariables, loadAgentConfig } from "./config.js";
import { AgentConfigError } from "./errors.js";

// The composition root: one root logger for the process; the agent hands its components children.
const root = rootLogger();
const log = logger("cni-agent", root);

async function main(): Promise<number> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    process.stdout.write(agentHelp());
    return 0;
  }
  let agent: Agent;
  try {
    const config = loadAgentConfig();
    const unknown = agentUnknownVariables();
    if (unknown.length > 0) log.warn({ variables: unknown }, "environment variables that look like the agent's are not read by it (see cni-agent --help)");
    agent = await Agent.start(config, { log: root });
  } catch (err) {
    // One line a human can act on (the variable is named in AgentConfigError messages), then the log.
    process.stderr.write(`cni-agent: ${errorMessage(err)}\n`);
    log.fatal({ err: errorMessage(err), code: (err as { code?: string }).code }, "node agent failed to start");
    return err instanceof AgentConfigError ? 2 : 1;
  }
  return await new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (signalled) return;
      signalled = true;
      log.info({ signal: sig }, "shutting down");
      agent.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err: errorMessage(err) }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log.fatal({ err: errorMessage(err) }, "node agent crashed");
    process.exit(1);
  },
);
