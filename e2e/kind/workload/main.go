// Command workload is the e2e suite's container on kind: a tiny static binary, so the image is made
// here with no registry. "workload sleep" runs until SIGTERM/SIGINT; "workload fail SECONDS CODE"
// runs SECONDS, then exits with CODE (the kubelet then marks a restartPolicy: Never pod Failed).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: workload sleep | workload fail SECONDS CODE")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sleep":
		fmt.Println("workload: running")
		<-stop
		fmt.Println("workload: stopped")
	case "fail":
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: workload fail SECONDS CODE")
			os.Exit(2)
		}
		secs, err1 := strconv.Atoi(os.Args[2])
		code, err2 := strconv.Atoi(os.Args[3])
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "workload fail: SECONDS and CODE must be integers")
			os.Exit(2)
		}
		fmt.Printf("workload: running, failing with exit code %d in %ds\n", code, secs)
		select {
		case <-time.After(time.Duration(secs) * time.Second):
			fmt.Println("workload: failing")
			os.Exit(code)
		case <-stop:
			fmt.Println("workload: stopped")
		}
	default:
		fmt.Fprintf(os.Stderr, "workload: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
