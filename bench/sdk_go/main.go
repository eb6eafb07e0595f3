// Command sdk-go is the benchmark's Go SDK worker (contenders sdk-go and sdk-go+sidecar): conductor-go's
// TaskRunner as its README shows it, one StartWorker per task of BENCH_TASKS ("name:kind,..."), batch size
// = --threads, poll interval 100 ms. Kinds as in bench/task_kinds.py: noop returns at once, sleep10
// sleeps 10 ms. The server comes from CONDUCTOR_SERVER_URL (the sidecar's address in sdk-go+sidecar).
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	"github.com/conductor-sdk/conductor-go/sdk/client"
	"github.com/conductor-sdk/conductor-go/sdk/log"
	"github.com/conductor-sdk/conductor-go/sdk/model"
	"github.com/conductor-sdk/conductor-go/sdk/worker"
)

func kind(name string) model.ExecuteTaskFunction {
	switch name {
	case "noop":
		return func(t *model.Task) (interface{}, error) { return map[string]interface{}{"ok": true}, nil }
	case "sleep10":
		return func(t *model.Task) (interface{}, error) {
			time.Sleep(10 * time.Millisecond)
			return map[string]interface{}{"ok": true}, nil
		}
	}
	return nil
}

func main() {
	threads := flag.Int("threads", 10, "batch size (tasks in flight) per task type")
	flag.Parse()
	runner := worker.NewTaskRunnerWithApiClient(client.NewAPIClientFromEnv())
	for _, item := range strings.Split(os.Getenv("BENCH_TASKS"), ",") {
		name, k, _ := strings.Cut(item, ":")
		fn := kind(k)
		if fn == nil {
			log.Error("unknown task kind", "kind", k)
			os.Exit(2)
		}
		if err := runner.StartWorker(name, fn, *threads, 100*time.Millisecond); err != nil {
			log.Error("cannot start", "error", err)
			os.Exit(1)
		}
	}
	runner.WaitWorkers()
}
