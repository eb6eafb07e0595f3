package io.cwo.examples;

import java.util.Map;

/**
 * The client's per-task property names ({@code conductor.worker.<task>.<prop>}, then
 * {@code conductor.worker.all.<prop>}), read from environment variables of exactly those names.
 * Kubernetes allows dots in variable names, and a Spring Boot worker on the client's Spring module
 * reads the same variables, so one set of variables configures both kinds of Java worker.
 */
final class WorkerSettings {

    private final Map<String, String> env;

    WorkerSettings(Map<String, String> env) {
        this.env = env;
    }

    String string(String task, String prop, String fallback) {
        for (String scope : new String[] {task, "all"}) {
            String value = env.get("conductor.worker." + scope + "." + prop);
            if (value != null && !value.isBlank()) {
                return value.trim();
            }
        }
        return fallback;
    }

    int integer(String task, String prop, int fallback) {
        String value = string(task, prop, null);
        if (value == null) {
            return fallback;
        }
        try {
            return Integer.parseInt(value);
        } catch (NumberFormatException e) {
            System.err.printf("ignoring conductor.worker.*.%s=%s: not a number%n", prop, value);
            return fallback;
        }
    }

    /** CONDUCTOR_WORKER_METRICS_PORT: the client has no setting for it (9991 is its metrics module's default). */
    int metricsPort(int fallback) {
        String value = env.get("CONDUCTOR_WORKER_METRICS_PORT");
        return value == null || value.isBlank() ? fallback : Integer.parseInt(value.trim());
    }
}
