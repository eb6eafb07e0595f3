// Command ceiling-go is the benchmark's compiled bare loop: the least any client can spend per task,
// to tell how much of a round trip is the server's and how much the client's. It does what
// bench/ceiling.py does (one goroutine batch-polls the free slots, --threads goroutines run the task
// and report it; with --update-v2 each runs the task the server hands back), in Go with the standard
// library only. BENCH_TASKS="name:kind" (one task type; kind noop or sleep10). Stops on SIGTERM.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type task struct {
	TaskID             string `json:"taskId"`
	WorkflowInstanceID string `json:"workflowInstanceId"`
}

type result struct {
	TaskID             string         `json:"taskId"`
	WorkflowInstanceID string         `json:"workflowInstanceId"`
	WorkerID           string         `json:"workerId"`
	Status             string         `json:"status"`
	OutputData         map[string]any `json:"outputData"`
}

var kinds = map[string]func(){
	"noop":    func() {},
	"sleep10": func() { time.Sleep(10 * time.Millisecond) },
}

func main() {
	server := flag.String("server-url", "", "the Conductor API base, e.g. http://127.0.0.1:8080/api")
	threads := flag.Int("threads", 10, "slots: tasks run at once")
	pollTimeout := flag.Int("poll-timeout-ms", 1000, "the batch poll's server-side wait")
	updateV2 := flag.Bool("update-v2", false, "report with update-v2 and run the task it hands back")
	flag.Parse()
	name, kind, _ := strings.Cut(strings.Split(os.Getenv("BENCH_TASKS"), ",")[0], ":")
	run, ok := kinds[kind]
	if *server == "" || !ok {
		fmt.Fprintln(os.Stderr, "need --server-url and BENCH_TASKS=name:noop|sleep10")
		os.Exit(2)
	}
	base := strings.TrimRight(*server, "/")
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *threads + 1, DisableCompression: true},
	}
	free := make(chan struct{}, *threads)
	for i := 0; i < *threads; i++ {
		free <- struct{}{}
	}
	work := make(chan task, *threads)

	// report sends the result; with update-v2 it returns the task the server handed back, if any.
	report := func(path string, t task) (*task, error) {
		body, _ := json.Marshal(result{t.TaskID, t.WorkflowInstanceID, "bench-ceiling-go", "COMPLETED", map[string]any{"ok": true}})
		resp, err := client.Post(base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || len(data) == 0 || path != "/tasks/update-v2" {
			return nil, err
		}
		var next task
		if json.Unmarshal(data, &next) != nil || next.TaskID == "" {
			return nil, nil
		}
		return &next, nil
	}
	path := "/tasks"
	if *updateV2 {
		path = "/tasks/update-v2"
	}
	for i := 0; i < *threads; i++ {
		go func() {
			for t := range work {
				current := &t
				for current != nil {
					run()
					next, err := report(path, *current)
					if err != nil {
						fmt.Fprintln(os.Stderr, "update:", err)
					}
					current = next
				}
				free <- struct{}{}
			}
		}()
	}
	go func() {
		pollURL := fmt.Sprintf("%s/tasks/poll/batch/%s", base, url.PathEscape(name))
		for {
			<-free
			count := 1
		more:
			for count < *threads {
				select {
				case <-free:
					count++
				default:
					break more
				}
			}
			q := url.Values{"workerid": {"bench-ceiling-go"}, "count": {fmt.Sprint(count)}, "timeout": {fmt.Sprint(*pollTimeout)}}
			var tasks []task
			resp, err := client.Get(pollURL + "?" + q.Encode())
			if err == nil {
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if len(data) > 0 {
					_ = json.Unmarshal(data, &tasks)
				}
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			for _, t := range tasks {
				work <- t
			}
			for i := len(tasks); i < count; i++ {
				free <- struct{}{}
			}
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
