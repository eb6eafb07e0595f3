"use strict";
// The sidecar tests' JavaScript worker, written as the SDK's README shows it and nothing more: the
// server from the SDK's environment variables, a concurrency of 10, no domain, no metrics, no signal
// handling. The task sleeps input.seconds and returns the host it ran on.
const { OrkesClients, TaskHandler, worker } = require("@io-orkes/conductor-javascript");

worker({ taskDefName: process.env.PLAIN_TASK || "plain-sleep", concurrency: 10 })(async function plainSleep(task) {
  await new Promise((resolve) => setTimeout(resolve, Number(task.inputData?.seconds || 0) * 1000));
  return { status: "COMPLETED", outputData: { pod: process.env.HOSTNAME } };
});

async function main() {
  const clients = await OrkesClients.from();
  const handler = new TaskHandler({ client: await clients.getClient(), scanForDecorated: true });
  await handler.startWorkers();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
