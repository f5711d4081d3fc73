// Command sessiond is the session service: see README.md, or run
// "sessiond help".
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(untilSecondSignal(sigs, os.Stderr, func(ctx context.Context) int {
		return Main(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	}))
}

// untilSecondSignal runs run and returns its exit code. The first signal
// on sigs ends run's context (serve then drains in-flight requests); a
// second one returns at once, without waiting for run, with the shell's
// code for death by that signal (128 + its number; 130 for SIGINT).
func untilSecondSignal(sigs <-chan os.Signal, stderr io.Writer, run func(context.Context) int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx) }()
	select {
	case code := <-done:
		return code
	case <-sigs:
		cancel()
	}
	select {
	case code := <-done:
		return code
	case sig := <-sigs:
		fmt.Fprintf(stderr, "sessiond: %v again: stopping now, without waiting for requests in flight\n", sig)
		if n, ok := sig.(syscall.Signal); ok {
			return 128 + int(n)
		}
		return 1
	}
}
