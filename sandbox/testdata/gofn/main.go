// Command gofn is a test function written with aws-lambda-go, as a Lambda
// user writes one. The event says what to do, so that one binary covers
// the behaviours the sandbox tests need.
package main

import (
	"context"
	"encoding/json"
	"errors"
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
	"unsafe"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// hoard keeps connections open across invocations.
var hoard []net.Conn

// grown holds what "grow" allocated after answering.
var grown []byte

// inotifies keeps inotify instances open across invocations.
var inotifies []int

type event struct {
	Do  string   `json:"do"`
	Env []string `json:"env"`
	N   int      `json:"n"`
}

// handler returns any: a map for most behaviours, an io.Reader for the
// streamed ones, which aws-lambda-go posts as it reads it (chunked, with
// the error in the trailer if the reader fails).
func handler(ctx context.Context, ev event) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	fmt.Printf("handling %s in %s\n", ev.Do, lc.AwsRequestID)
	switch ev.Do {
	case "stream", "streamfail":
		// ev.N lines, a second apart; streamfail then fails.
		pr, pw := io.Pipe()
		go func() {
			for i := range ev.N {
				if i > 0 {
					time.Sleep(time.Second)
				}
				fmt.Fprintf(pw, "line %d\n", i)
			}
			if ev.Do == "streamfail" {
				pw.CloseWithError(errors.New("the stream broke midway"))
				return
			}
			pw.Close()
		}()
		return pr, nil
	case "panic":
		panic("boom")
	case "error":
		return nil, fmt.Errorf("handled failure")
	case "env":
		out := map[string]any{}
		for _, k := range ev.Env {
			out[k] = os.Getenv(k)
		}
		return out, nil
	case "hoard":
		// Open a thousand connections to the Runtime API and keep them:
		// how many does the agent let it hold?
		for i := 0; i < 1000; i++ {
			if c, err := net.Dial("tcp", os.Getenv("AWS_LAMBDA_RUNTIME_API")); err == nil {
				hoard = append(hoard, c)
			}
		}
		open := 0
		for _, c := range hoard {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && os.IsTimeout(err) {
				open++
			}
		}
		return map[string]any{"dialed": len(hoard), "open": open}, nil
	case "escape":
		// Each way out of the sandbox's kernel surface that the filter
		// closes, with the errno it got ("" when it worked).
		out := map[string]any{}
		try := func(name string, err error) {
			if err == nil {
				out[name] = ""
			} else {
				out[name] = err.Error()
			}
		}
		_, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}})
		try("clone_newuser", err)
		try("unshare_newuser", syscall.Unshare(syscall.CLONE_NEWUSER))
		var params [120]byte
		_, _, e := syscall.Syscall(425 /* io_uring_setup on amd64 */, 4, uintptr(unsafe.Pointer(&params)), 0)
		try("io_uring_setup", errnoErr(e))
		_, _, e = syscall.Syscall(250 /* keyctl */, 0 /* KEYCTL_GET_KEYRING_ID */, ^uintptr(3) /* session */, 0)
		try("keyctl", errnoErr(e))
		_, _, e = syscall.Syscall(321 /* bpf */, 0, 0, 0)
		try("bpf", errnoErr(e))
		_, _, e = syscall.Syscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		try("ptrace", errnoErr(e))
		var rl syscall.Rlimit
		syscall.Getrlimit(4 /* RLIMIT_CORE */, &rl)
		out["core_hard"] = rl.Max
		status, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "Seccomp:") {
				out["seccomp"] = strings.TrimSpace(strings.TrimPrefix(l, "Seccomp:"))
			}
		}
		// Ordinary work still runs: a child process, threads, files.
		_, err = syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
		try("fork_exec", err)
		return out, nil
	case "getppid":
		// The cost of a trivial system call here (seccomp's filter runs on
		// each), in ns.
		start := time.Now()
		for i := 0; i < ev.N; i++ {
			syscall.Getppid()
		}
		return map[string]any{"ns": float64(time.Since(start).Nanoseconds()) / float64(max(ev.N, 1))}, nil
	case "cgroup":
		// What a runtime sizing its heap would read.
		limit, _ := os.ReadFile("/sys/fs/cgroup/memory/memory.limit_in_bytes")
		cpu, _ := os.ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
		self, _ := os.ReadFile("/proc/self/cgroup")
		return map[string]any{"memory_limit": strings.TrimSpace(string(limit)), "cpu_quota": strings.TrimSpace(string(cpu)), "self": string(self)}, nil
	case "hwm":
		// The process's peak resident memory, as /proc says it.
		status, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				return map[string]any{"hwm_kb": kb}, nil
			}
		}
		return nil, errors.New("no VmHWM in /proc/self/status")
	case "grow":
		// Answer, then take n MB while idle.
		go func() {
			time.Sleep(300 * time.Millisecond)
			b := make([]byte, ev.N<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			grown = b
		}()
		return map[string]any{"ok": true}, nil
	case "fill":
		// Write /tmp full: how much went in, and what stopped it?
		f, err := os.Create("/tmp/fill")
		if err != nil {
			return map[string]any{"written": 0, "error": err.Error()}, nil
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		written := 0
		for {
			n, err := f.Write(buf)
			written += n
			if err != nil {
				return map[string]any{"written": written, "error": errors.Unwrap(err).Error()}, nil
			}
		}
	case "forkbomb":
		// Start processes that outlive the answer until the kernel says no.
		started := 0
		for {
			_, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "600"}, &syscall.ProcAttr{})
			if err != nil {
				return map[string]any{"started": started, "error": err.Error()}, nil
			}
			started++
		}
	case "inotify":
		// Open up to n inotify instances and keep them: how many did the
		// kernel give, and what refused the next one?
		out := map[string]any{"error": ""}
		for i := 0; i < ev.N; i++ {
			fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
			if err != nil {
				out["error"] = err.Error()
				break
			}
			inotifies = append(inotifies, fd)
		}
		out["held"] = len(inotifies)
		return out, nil
	case "ids":
		uidMap, _ := os.ReadFile("/proc/self/uid_map")
		status, _ := os.ReadFile("/proc/self/status")
		capEff := ""
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				capEff = strings.TrimSpace(v)
			}
		}
		return map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "uid_map": strings.TrimSpace(string(uidMap)), "cap_eff": capEff}, nil
	case "fds":
		// What each open descriptor of the runtime is.
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return nil, err
		}
		fds := map[string]string{}
		for _, e := range entries {
			fds[e.Name()], _ = os.Readlink("/proc/self/fd/" + e.Name())
		}
		return map[string]any{"fds": fds}, nil
	case "mountinfo":
		b, _ := os.ReadFile("/proc/self/mountinfo")
		return map[string]any{"mountinfo": string(b)}, nil
	case "tmp":
		// What /tmp is: its filesystem's magic, size and free space, and
		// what is in it.
		var st syscall.Statfs_t
		if err := syscall.Statfs("/tmp", &st); err != nil {
			return nil, err
		}
		entries, _ := os.ReadDir("/tmp")
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return map[string]any{
			"magic": fmt.Sprintf("%#x", st.Type), "sizeMB": int64(st.Blocks) * st.Bsize >> 20,
			"freeMB": int64(st.Bavail) * st.Bsize >> 20, "entries": names,
		}, nil
	case "ppid":
		b, _ := os.ReadFile("/proc/1/cmdline")
		return map[string]any{"pid": os.Getpid(), "ppid": os.Getppid(), "init": strings.ReplaceAll(string(b), "\x00", " ")}, nil
	}
	return map[string]any{"ok": true, "requestId": lc.AwsRequestID}, nil
}

// shutdownSeen is closed once the extension has printed its SHUTDOWN.
var shutdownSeen = make(chan struct{})

// extension registers an extension for INVOKE and SHUTDOWN, as an
// in-process extension does, and prints each event it gets.
func extension() {
	base := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension/"
	req, _ := http.NewRequest(http.MethodPost, base+"register", strings.NewReader(`{"events":["INVOKE","SHUTDOWN"]}`))
	req.Header.Set("Lambda-Extension-Name", "gofn-extension")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("extension register:", err)
		return
	}
	info, _ := io.ReadAll(res.Body)
	res.Body.Close()
	id := res.Header.Get("Lambda-Extension-Identifier")
	fmt.Printf("extension registered: %d %s\n", res.StatusCode, info)
	go func() {
		for {
			req, _ := http.NewRequest(http.MethodGet, base+"event/next", nil)
			req.Header.Set("Lambda-Extension-Identifier", id)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				fmt.Println("extension next:", err)
				return
			}
			var ev struct {
				EventType      string `json:"eventType"`
				RequestID      string `json:"requestId"`
				ShutdownReason string `json:"shutdownReason"`
			}
			err = json.NewDecoder(res.Body).Decode(&ev)
			res.Body.Close()
			if err != nil {
				fmt.Println("extension event:", res.StatusCode, err)
				return
			}
			fmt.Printf("extension got %s %s%s\n", ev.EventType, ev.RequestID, ev.ShutdownReason)
			if ev.EventType == "SHUTDOWN" {
				close(shutdownSeen)
				return
			}
		}
	}()
}

func main() {
	switch os.Getenv("GOFN_EXTENSIONS") {
	case "sigterm":
		// aws-lambda-go's own: an internal extension, then SIGTERM.
		lambda.StartWithOptions(handler, lambda.WithEnableSIGTERM(func() {
			fmt.Println("aws-lambda-go SIGTERM handler ran")
		}))
		return
	case "events":
		extension()
	}
	// Say so and exit when SIGTERM comes, as runtimes that clean up do.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		if os.Getenv("GOFN_EXTENSIONS") == "events" {
			// SIGTERM follows the SHUTDOWN event at once: let the
			// extension finish, within the sandbox's grace.
			select {
			case <-shutdownSeen:
			case <-time.After(time.Second):
			}
		}
		fmt.Println("runtime got SIGTERM")
		os.Exit(0)
	}()
	lambda.Start(handler)
}
