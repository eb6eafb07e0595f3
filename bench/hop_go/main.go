// Command hop-go is the benchmark's bound for any sidecar: a bare reverse proxy (the standard library's
// httputil.ReverseProxy, keep-alive both ways) that forwards every request and does nothing else.
// Contender sdk-go+hop-go puts it where sdk-go+sidecar puts conductor-worker sidecar: what the Go SDK
// loses through it is the price of the extra hop itself on this machine, whatever the sidecar does.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7700", "address the worker talks to")
	server := flag.String("server-url", "http://127.0.0.1:8080/api", "the Conductor API base")
	flag.Parse()
	target, err := url.Parse(strings.TrimSuffix(*server, "/api"))
	if err != nil {
		log.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	log.Fatal(http.ListenAndServe(*listen, proxy))
}
