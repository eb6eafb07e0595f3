// Command plain-sleep is a Go SDK worker written as conductor-go's README shows it, and nothing more:
// the server from the SDK's environment variables, one StartWorker call with a fixed batch size and
// poll interval, no domain, no metrics, no signal handling. The operator's sidecar gives it the
// ConductorWorker's domain and concurrency, its busy slots, a drain before SIGTERM and crash recovery.
// The task sleeps input.seconds and returns the pod it ran on.
package main

import (
	"os"
	"time"

	"github.com/conductor-sdk/conductor-go/sdk/client"
	"github.com/conductor-sdk/conductor-go/sdk/model"
	"github.com/conductor-sdk/conductor-go/sdk/worker"
)

func sleepTask(t *model.Task) (interface{}, error) {
	seconds, _ := t.InputData["seconds"].(float64)
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	host, _ := os.Hostname()
	return map[string]interface{}{"pod": host}, nil
}

func main() {
	taskName := os.Getenv("PLAIN_TASK")
	if taskName == "" {
		taskName = "plain-sleep"
	}
	taskRunner := worker.NewTaskRunnerWithApiClient(client.NewAPIClientFromEnv())
	taskRunner.StartWorker(taskName, sleepTask, 10, 100*time.Millisecond)
	taskRunner.WaitWorkers()
}
