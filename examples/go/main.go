// Command get-inventory is the get-inventory worker of Conductor's "Using Workers" guide, written
// with the Go SDK as its docs show it: a typed worker, a task runner from the SDK's own environment
// variables (CONDUCTOR_SERVER_URL, CONDUCTOR_AUTH_KEY, CONDUCTOR_AUTH_SECRET) and the SDK's
// Prometheus metrics.
//
// The Go SDK reads no per-task settings from the environment, so this program reads the names the
// other SDKs use (see envSetting) and passes them as the SDK's worker options; the operator sets them.
package main

import (
	"context"
	"math/rand"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/conductor-sdk/conductor-go/sdk/client"
	"github.com/conductor-sdk/conductor-go/sdk/log"
	"github.com/conductor-sdk/conductor-go/sdk/metrics"
	"github.com/conductor-sdk/conductor-go/sdk/settings"
	"github.com/conductor-sdk/conductor-go/sdk/worker"
)

const taskName = "get-inventory"

// Input is the task's input; the guide's workflow passes product_id.
type Input struct {
	ProductID string `json:"product_id"`
}

// Output is what the guide's worker returns.
type Output struct {
	ProductID string `json:"product_id"`
	Inventory int    `json:"inventory"`
}

func getInventory(_ context.Context, in Input) (Output, error) {
	return Output{ProductID: in.ProductID, Inventory: rand.Intn(10)}, nil
}

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]`)

// envSetting reads CONDUCTOR_WORKER_<TASK>_<PROP>, then CONDUCTOR_WORKER_ALL_<PROP> (the convention of
// the Python and JavaScript SDKs, with the task name's other characters as '_').
func envSetting(task, prop string) (string, bool) {
	for _, scope := range []string{nonAlnum.ReplaceAllString(strings.ToUpper(task), "_"), "ALL"} {
		if v, ok := os.LookupEnv("CONDUCTOR_WORKER_" + scope + "_" + prop); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

func envInt(task, prop string, fallback int) int {
	if v, ok := envSetting(task, prop); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		log.Warn("ignoring a setting that is not a number", "prop", prop, "value", v)
	}
	return fallback
}

func main() {
	domain := "john"
	if v, ok := envSetting(taskName, "DOMAIN"); ok {
		domain = v
	}
	batchSize := envInt(taskName, "BATCH_SIZE", 1)
	pollInterval := time.Duration(envInt(taskName, "POLL_INTERVAL", 100)) * time.Millisecond
	metricsPort := 2112
	if v, err := strconv.Atoi(os.Getenv("CONDUCTOR_WORKER_METRICS_PORT")); err == nil {
		metricsPort = v
	}

	go metrics.ProvideMetrics(settings.NewMetricsSettings("/metrics", metricsPort))

	runner := worker.NewTaskRunnerWithApiClient(client.NewAPIClientFromEnv())
	w := worker.NewSimpleTypedWorker(taskName, getInventory,
		worker.WithDomain(domain), worker.WithBatchSize(batchSize), worker.WithPollInterval(pollInterval))
	if err := runner.RegisterWorker(w); err != nil {
		log.Error("cannot start the worker", "error", err)
		os.Exit(1)
	}
	log.Info("polling", "task", taskName, "domain", domain, "batchSize", batchSize, "pollInterval", pollInterval)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	// The SDK's graceful shutdown: stop polling, then wait for the running tasks to be executed and
	// reported (within the pod's grace period).
	runner.Shutdown(taskName)
	runner.WaitWorkers()
	log.Info("stopped", "task", taskName)
}
