package io.cwo.examples;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

import com.netflix.conductor.client.events.task.TaskPayloadUsedEvent;
import com.netflix.conductor.client.events.task.TaskResultPayloadSizeEvent;
import com.netflix.conductor.client.events.taskrunner.PollCompleted;
import com.netflix.conductor.client.events.taskrunner.PollFailure;
import com.netflix.conductor.client.events.taskrunner.PollStarted;
import com.netflix.conductor.client.events.taskrunner.TaskExecutionCompleted;
import com.netflix.conductor.client.events.taskrunner.TaskExecutionFailure;
import com.netflix.conductor.client.events.taskrunner.TaskExecutionStarted;
import com.netflix.conductor.client.events.workflow.WorkflowInputPayloadSizeEvent;
import com.netflix.conductor.client.events.workflow.WorkflowPayloadUsedEvent;
import com.netflix.conductor.client.events.workflow.WorkflowStartedEvent;
import com.netflix.conductor.client.metrics.MetricsCollector;

import com.sun.net.httpserver.HttpServer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

/**
 * Prometheus /metrics from the client's task-runner events, under the names of the client's metrics
 * catalog (task_poll_total, task_poll_time_seconds, task_execution_started_total,
 * task_execute_time_seconds, task_execute_error_total, active_workers, all labelled taskType).
 *
 * <p>Why here: the client's own Prometheus collector (module conductor-client-metrics) is not
 * published for the Java 17 clients, so a worker plugs its own MetricsCollector into the documented
 * hook, TaskRunnerConfigurer.Builder#withMetricsCollector.
 */
final class PrometheusEvents implements MetricsCollector {

    private static final Duration[] BUCKETS = {
        Duration.ofMillis(1), Duration.ofMillis(5), Duration.ofMillis(10), Duration.ofMillis(25),
        Duration.ofMillis(50), Duration.ofMillis(100), Duration.ofMillis(250), Duration.ofMillis(500),
        Duration.ofSeconds(1), Duration.ofMillis(2500), Duration.ofSeconds(5), Duration.ofSeconds(10),
    };

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final Map<String, AtomicInteger> active = new ConcurrentHashMap<>();
    private HttpServer server;

    void startServer(int port) throws IOException {
        server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/metrics", exchange -> {
            byte[] body = registry.scrape().getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
    }

    void stopServer() {
        if (server != null) {
            server.stop(0);
        }
    }

    private Counter counter(String name, String help, String... tags) {
        return Counter.builder(name).description(help).tags(tags).register(registry);
    }

    private Timer timer(String name, String help, String taskType, String status) {
        return Timer.builder(name).description(help).tags("taskType", taskType, "status", status)
                .serviceLevelObjectives(BUCKETS).register(registry);
    }

    private AtomicInteger activeWorkers(String taskType) {
        return active.computeIfAbsent(taskType, t -> {
            AtomicInteger value = new AtomicInteger();
            Gauge.builder("active_workers", value, AtomicInteger::doubleValue)
                    .description("Tasks being executed by worker threads now").tag("taskType", t).register(registry);
            return value;
        });
    }

    @Override
    public void consume(PollStarted e) {
        counter("task_poll_total", "Polls sent", "taskType", e.getTaskType()).increment();
    }

    @Override
    public void consume(PollCompleted e) {
        timer("task_poll_time_seconds", "Poll latency", e.getTaskType(), "SUCCESS").record(e.getDuration());
    }

    @Override
    public void consume(PollFailure e) {
        timer("task_poll_time_seconds", "Poll latency", e.getTaskType(), "FAILURE").record(e.getDuration());
        counter("task_poll_error_total", "Polls that failed", "taskType", e.getTaskType(),
                "exception", e.getCause() == null ? "unknown" : e.getCause().getClass().getSimpleName()).increment();
    }

    @Override
    public void consume(TaskExecutionStarted e) {
        counter("task_execution_started_total", "Tasks handed to the worker", "taskType", e.getTaskType()).increment();
        activeWorkers(e.getTaskType()).incrementAndGet();
    }

    @Override
    public void consume(TaskExecutionCompleted e) {
        activeWorkers(e.getTaskType()).decrementAndGet();
        timer("task_execute_time_seconds", "Execution latency", e.getTaskType(), "SUCCESS").record(e.getDuration());
    }

    @Override
    public void consume(TaskExecutionFailure e) {
        activeWorkers(e.getTaskType()).decrementAndGet();
        timer("task_execute_time_seconds", "Execution latency", e.getTaskType(), "FAILURE").record(e.getDuration());
        counter("task_execute_error_total", "Executions that threw", "taskType", e.getTaskType(),
                "exception", e.getCause() == null ? "unknown" : e.getCause().getClass().getSimpleName()).increment();
    }

    @Override
    public void consume(TaskPayloadUsedEvent e) {}

    @Override
    public void consume(TaskResultPayloadSizeEvent e) {}

    @Override
    public void consume(WorkflowPayloadUsedEvent e) {}

    @Override
    public void consume(WorkflowInputPayloadSizeEvent e) {}

    @Override
    public void consume(WorkflowStartedEvent e) {}
}
