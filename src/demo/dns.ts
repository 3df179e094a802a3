import { execFile } from "node:child_process";
import { DemoError } from "./apps.js";
import { BACKEND_SERVICE, podKey } from "./layout.js";
import type { DemoRun, RunPod } from "./run.js";

// The demo's DNS step: `dig` inside an enrolled pod's netns asks an ordinary resolver address;
// the agent's in-pod DNS capture sends the query to ztunnel's proxy on 15053, which answers the
// mesh Service's name with its VIP from ztunnel's state (no cluster DNS anywhere).

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => (err !== null ? reject(new DemoError(`${cmd} ${args.join(" ")}: ${stdout.trim() || stderr.trim() || err.message}`)) : resolve(stdout)));
  });
}

export async function showDns(r: DemoRun, pod: RunPod): Promise<string> {
  const resolver = r.topology.node(pod.node).gateway;
  const args = [`--net=${pod.netnsPath}`, "dig", "+short", "+tries=1", "+timeout=3", `@${resolver}`, BACKEND_SERVICE.hostname];
  const answer = (await run("nsenter", args)).trim();
  if (answer !== BACKEND_SERVICE.vip) throw new DemoError(`dig ${BACKEND_SERVICE.hostname} in ${podKey(pod)} answered "${answer}", expected the Service VIP ${BACKEND_SERVICE.vip}`);
  return [
    `query      in ${podKey(pod)}: dig @${resolver} ${BACKEND_SERVICE.hostname}   (UDP 53, captured in the pod to ztunnel's 15053)`,
    `answer     ${answer}   (Service ${BACKEND_SERVICE.name}.demo's VIP, from ztunnel's state: no cluster DNS involved)`,
  ].join("\n");
}
