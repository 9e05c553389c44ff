package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
)

// BenchmarkIngressLoad sends GET /highscores/list for pacman.com to the
// ingress controller on 127.0.0.1 at a fixed 200 requests a second for 30 s
// (6000 requests, each bounded by a 5 s timeout) and reports latency
// percentiles and errors. b.N is ignored: the load is the measurement.
//
//	go test ./tests -run '^$' -bench IngressLoad -benchtime 1x -args --kubeconfig=$(make -s kubeconfig)
func BenchmarkIngressLoad(b *testing.B) {
	const rate, duration = 200, 30 * time.Second
	nodes, err := cluster.Nodes(*clusterName)
	if err != nil || len(nodes) == 0 {
		b.Skipf("needs the suite's kind cluster %q (its ingress port): %v", *clusterName, err)
	}
	out, err := docker.Run(context.Background(), "port", nodes[0], fmt.Sprintf("%d/tcp", addons.IngressNodePort))
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + strings.Fields(out)[0] + "/highscores/list"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var took []time.Duration
	errs := 0
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < rate*int(duration/time.Second); sent++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = "pacman.com"
			t0 := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || resp.StatusCode != http.StatusOK {
				errs++
				return
			}
			took = append(took, d)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(took) == 0 {
		b.Fatalf("no request succeeded (%d errors)", errs)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	pct := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(took)+errs)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(errs), "errors")
}
