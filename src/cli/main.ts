#!/usr/bin/env node
import { runCli } from "./run.js";

// The ambientctl executable; the logic is in run.ts (tests call runCli in-process).
process.exitCode = await runCli(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
});
