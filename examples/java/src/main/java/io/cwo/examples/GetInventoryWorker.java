package io.cwo.examples;

import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;

import com.netflix.conductor.client.automator.TaskRunnerConfigurer;
import com.netflix.conductor.client.http.ConductorClient;
import com.netflix.conductor.client.http.TaskClient;
import com.netflix.conductor.client.worker.Worker;
import com.netflix.conductor.common.metadata.tasks.Task;
import com.netflix.conductor.common.metadata.tasks.TaskResult;

import io.orkes.conductor.client.ApiClient;

/**
 * The get-inventory worker of Conductor's "Using Workers" guide, with the Conductor Java client.
 *
 * <p>Configuration follows the client's own conventions: the server and Orkes key/secret from
 * CONDUCTOR_SERVER_URL / CONDUCTOR_AUTH_KEY / CONDUCTOR_AUTH_SECRET (the client's useEnvVariables), and
 * per-task settings under the client's property names {@code conductor.worker.<task>.<prop>} and
 * {@code conductor.worker.all.<prop>} (threadCount, domain, pollInterval). The plain client reads those
 * names only from a classpath file and its Spring module from the Spring environment, so this program
 * reads them from the process environment itself (see {@link WorkerSettings}).
 */
public final class GetInventoryWorker implements Worker {

    static final String TASK = "get-inventory";

    private final int pollingIntervalMs;

    GetInventoryWorker(int pollingIntervalMs) {
        this.pollingIntervalMs = pollingIntervalMs;
    }

    @Override
    public String getTaskDefName() {
        return TASK;
    }

    @Override
    public int getPollingInterval() {
        return pollingIntervalMs;
    }

    /**
     * The pod's name as the worker id. The client's default is the local host name, resolved through
     * /etc/hosts, with HOSTNAME as fallback; where neither resolves it polls with a blank id and the
     * server refuses every poll.
     */
    @Override
    public String getIdentity() {
        for (String name : new String[] {"POD_NAME", "HOSTNAME"}) {
            String value = System.getenv(name);
            if (value != null && !value.isBlank()) {
                return value;
            }
        }
        return Worker.super.getIdentity();
    }

    @Override
    public TaskResult execute(Task task) {
        TaskResult result = new TaskResult(task);
        result.setStatus(TaskResult.Status.COMPLETED);
        result.addOutputData("product_id", task.getInputData().get("product_id"));
        result.addOutputData("inventory", ThreadLocalRandom.current().nextInt(10));
        return result;
    }

    /** The Orkes builder reads the key/secret too, but fails without them, so OSS uses the plain one. */
    static ConductorClient clientFromEnv() {
        boolean orkes = System.getenv("CONDUCTOR_AUTH_KEY") != null || System.getenv("CONDUCTOR_SERVER_AUTH_KEY") != null;
        return orkes ? ApiClient.builder().useEnvVariables(true).build()
                : ConductorClient.builder().useEnvVariables(true).build();
    }

    public static void main(String[] args) throws Exception {
        WorkerSettings settings = new WorkerSettings(System.getenv());
        int threads = settings.integer(TASK, "threadCount", 1);
        String domain = settings.string(TASK, "domain", "john");
        int pollInterval = settings.integer(TASK, "pollInterval", 100);

        PrometheusEvents metrics = new PrometheusEvents();
        metrics.startServer(settings.metricsPort(9991));

        TaskClient taskClient = new TaskClient(clientFromEnv());
        TaskRunnerConfigurer runner = new TaskRunnerConfigurer.Builder(taskClient, java.util.List.of(new GetInventoryWorker(pollInterval)))
                .withTaskThreadCount(Map.of(TASK, threads))
                .withTaskToDomain(Map.of(TASK, domain))
                .withMetricsCollector(metrics)
                .withShutdownGracePeriodSeconds(20)
                .build();
        runner.init();
        System.out.printf("polling %s (threadCount=%d, domain=%s, pollInterval=%d ms)%n", TASK, threads, domain, pollInterval);

        // SIGTERM: stop polling, let running tasks finish (the grace period above), then exit.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            runner.shutdown();
            metrics.stopServer();
            stopped.countDown();
        }));
        stopped.await();
    }
}
