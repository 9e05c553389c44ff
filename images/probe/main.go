// Command probe is the suite's in-cluster check tool: it serves HTTP and, run
// with kubectl exec, resolves names, fetches URLs and opens connections from
// inside the pod network, printing one line per result. Every call is bounded
// by -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: probe [-timeout 5s] COMMAND
  serve [ADDR]        serve HTTP on ADDR (default :8080): GET / answers the hostname
  lookup NAME         resolve NAME with the pod's resolver (search list included)
  get URL             GET URL and print the body
  fetch N URL...      GET each URL N times; print "STATUS BODY" (or "error MSG")
                      per response, one line each, never failing on HTTP errors
  hostname            print the pod's hostname
  connect HOST:PORT   open a TCP connection and report connected, refused or timeout
  write FILE TEXT     write TEXT to FILE (and fsync it)
  read FILE           print FILE
  sleep               do nothing until terminated`

func main() {
	timeout := flag.Duration("timeout", 5*time.Second, "bound of each network call")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, usage) }
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *timeout, args); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, timeout time.Duration, args []string) error {
	arg := func() (string, error) {
		if len(args) < 2 {
			return "", fmt.Errorf("%s needs an argument\n%s", args[0], usage)
		}
		return args[1], nil
	}
	switch args[0] {
	case "serve":
		addr := ":8080"
		if len(args) > 1 {
			addr = args[1]
		}
		return serve(ctx, addr)
	case "lookup":
		name, err := arg()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(addrs, " "))
		return nil
	case "get":
		url, err := arg()
		if err != nil {
			return err
		}
		client := &http.Client{Timeout: timeout}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		fmt.Println(strings.TrimSpace(string(body)))
		return nil
	case "fetch":
		if len(args) < 3 {
			return fmt.Errorf("fetch needs N and at least one URL\n%s", usage)
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("fetch: N must be 1 to 1000, not %q", args[1])
		}
		fetch(ctx, timeout, n, args[2:])
		return nil
	case "hostname":
		name, err := os.Hostname()
		if err != nil {
			return err
		}
		fmt.Println(name)
		return nil
	case "connect":
		addr, err := arg()
		if err != nil {
			return err
		}
		fmt.Println(connect(ctx, addr, timeout))
		return nil
	case "write":
		if len(args) != 3 {
			return fmt.Errorf("write needs FILE and TEXT\n%s", usage)
		}
		f, err := os.Create(args[1])
		if err != nil {
			return err
		}
		if _, err := f.WriteString(args[2]); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case "read":
		file, err := arg()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		fmt.Print(string(data))
		return nil
	case "sleep":
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// fetch GETs each URL n times, one line per response; bodies are folded
// onto their line. Keep-alives are off, so each request is a new connection
// (a Service then picks an endpoint per request).
func fetch(ctx context.Context, timeout time.Duration, n int, urls []string) {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, u := range urls {
		for i := 0; i < n; i++ {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			resp, err := client.Do(req)
			if err != nil {
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			fmt.Println(resp.StatusCode, strings.Join(strings.Fields(string(body)), " "))
		}
	}
}

// connect reports how a TCP connection attempt ended, as one word.
func connect(ctx context.Context, addr string, timeout time.Duration) string {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	switch {
	case err == nil:
		conn.Close()
		return "connected"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error: " + err.Error()
}

func serve(ctx context.Context, addr string) error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
