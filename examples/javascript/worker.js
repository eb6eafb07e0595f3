// The get-inventory worker of Conductor's "Using Workers" guide, with the JavaScript SDK as its README
// shows it: the client from CONDUCTOR_SERVER_URL / CONDUCTOR_AUTH_KEY / CONDUCTOR_AUTH_SECRET, a
// TaskHandler whose workers the SDK configures from CONDUCTOR_WORKER_<TASK>_<PROP> (concurrency,
// domain, poll_interval, ...), and its Prometheus metrics collector and server.
//
// Plain JavaScript has no decorator syntax, so `worker({...})` is applied to the function by hand,
// which is what a legacy @worker decorator does. It matters: TaskHandler applies the environment
// overrides only to decorated workers, not to objects passed in `workers`. The SDK has no variable
// for the metrics port, so this program reads CONDUCTOR_WORKER_METRICS_PORT (default 9090, the README's).
"use strict";

const {
  OrkesClients,
  TaskHandler,
  createMetricsCollector,
  MetricsServer,
  worker,
} = require("@io-orkes/conductor-javascript");

worker({ taskDefName: "get-inventory", domain: "john" })(async function getInventory(task) {
  return {
    status: "COMPLETED",
    outputData: {
      product_id: task.inputData?.product_id,
      inventory: Math.floor(Math.random() * 10),
    },
  };
});

async function main() {
  const metrics = createMetricsCollector();
  const port = Number(process.env.CONDUCTOR_WORKER_METRICS_PORT || 9090);
  const server = new MetricsServer(metrics, port);
  await server.start();

  const clients = await OrkesClients.from();
  const handler = new TaskHandler({
    client: await clients.getClient(),
    scanForDecorated: true,
    eventListeners: [metrics],
  });
  await handler.startWorkers();

  // Stop polling and let in-flight tasks finish before the pod's grace period ends.
  const stop = async () => {
    await handler.stopWorkers();
    await server.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
