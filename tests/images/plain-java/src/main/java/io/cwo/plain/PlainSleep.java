package io.cwo.plain;

import java.util.List;

import com.netflix.conductor.client.automator.TaskRunnerConfigurer;
import com.netflix.conductor.client.http.ConductorClient;
import com.netflix.conductor.client.http.TaskClient;
import com.netflix.conductor.client.worker.Worker;
import com.netflix.conductor.common.metadata.tasks.Task;
import com.netflix.conductor.common.metadata.tasks.TaskResult;

/**
 * The sidecar tests' Java worker, written as the Conductor Java client's README shows it and nothing
 * more: the server from the client's environment variables, 10 threads, no domain, no metrics, no
 * shutdown hook. The task sleeps input.seconds and returns the host it ran on.
 */
public final class PlainSleep implements Worker {

    private final String task;

    PlainSleep(String task) {
        this.task = task;
    }

    @Override
    public String getTaskDefName() {
        return task;
    }

    @Override
    public TaskResult execute(Task t) {
        Object seconds = t.getInputData().get("seconds");
        try {
            Thread.sleep((long) (Double.parseDouble(String.valueOf(seconds)) * 1000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        TaskResult result = new TaskResult(t);
        result.setStatus(TaskResult.Status.COMPLETED);
        result.addOutputData("pod", System.getenv("HOSTNAME"));
        return result;
    }

    public static void main(String[] args) {
        String task = System.getenv().getOrDefault("PLAIN_TASK", "plain-sleep");
        TaskClient taskClient = new TaskClient(ConductorClient.builder().useEnvVariables(true).build());
        TaskRunnerConfigurer configurer = new TaskRunnerConfigurer.Builder(taskClient, List.of(new PlainSleep(task)))
                .withThreadCount(10)
                .build();
        configurer.init();
    }
}
