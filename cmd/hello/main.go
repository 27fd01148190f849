// Command hello is a small web server that logplane's tests and quickstart run
// in pods. It answers / with a greeting naming its hostname, /healthz with 200
// while healthy, and can be told to misbehave:
//
//	POST /fail     /healthz answers 500 from now on
//	POST /heal     /healthz answers 200 again
//	POST /crash    the process exits with status 1
//
// Environment: PORT (default 8080), HELLO_GREETING (default "Hello"),
// HELLO_FAIL_HEALTH=1 (start unhealthy), HELLO_CRASH_AFTER (a duration after
// which it exits 1), HELLO_ALLOC_MB (allocate and touch that much memory at
// start, to test memory limits), HELLO_SHUTDOWN_DELAY (a duration to wait after
// SIGTERM before exiting). It logs one line per request to stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hello: hostname: %w", err)
	}
	greeting := envOr("HELLO_GREETING", "Hello")
	var unhealthy atomic.Bool
	unhealthy.Store(os.Getenv("HELLO_FAIL_HEALTH") == "1")

	if mb := os.Getenv("HELLO_ALLOC_MB"); mb != "" {
		n, err := strconv.Atoi(mb)
		if err != nil {
			return fmt.Errorf("hello: HELLO_ALLOC_MB: %w", err)
		}
		log.Printf("allocating %d MiB", n)
		hog := make([][]byte, 0, n)
		for range n {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hog = append(hog, b)
		}
		log.Printf("allocated %d MiB", len(hog))
		defer func() { _ = len(hog) }() // keep it alive
	}
	if d := os.Getenv("HELLO_CRASH_AFTER"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return fmt.Errorf("hello: HELLO_CRASH_AFTER: %w", err)
		}
		time.AfterFunc(dur, func() {
			log.Printf("crashing as told after %s", dur)
			os.Exit(1)
		})
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", greeting, host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(true)
		fmt.Fprintln(w, "health check will fail")
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(false)
		fmt.Fprintln(w, "health check will pass")
	})
	mux.HandleFunc("POST /crash", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("crashing as told by %s", r.RemoteAddr)
		os.Exit(1)
	})
	addr := ":" + envOr("PORT", "8080")
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
			mux.ServeHTTP(w, r)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("hello listening on %s as %s", addr, host)
	select {
	case err := <-errc:
		return fmt.Errorf("hello: serve: %w", err)
	case <-ctx.Done():
	}
	log.Printf("terminating")
	if d := os.Getenv("HELLO_SHUTDOWN_DELAY"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return fmt.Errorf("hello: HELLO_SHUTDOWN_DELAY: %w", err)
		}
		time.Sleep(dur)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("hello: shutdown: %w", err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
