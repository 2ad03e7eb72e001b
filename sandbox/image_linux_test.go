package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"nimbus/rpc"
)

// A #!/bin/bash bootstrap running a C++ binary linked against libstdc++,
// libgcc_s, libpthread.so.0 and libdl.so.2, as provided.al2023 runs them;
// the hostname resolves and a CA bundle is where Amazon Linux keeps it.
func TestImageRunsBashAndNativeBinaries(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("g++ is not installed: cannot build the C++ test program")
	}
	m, _ := newTestManager(t, Config{})
	dir := codeDir(t, script("native.bash"))
	out, err := exec.Command(gxx, "-O1", "-o", filepath.Join(dir, "native"), script("native.cc"),
		"-Wl,--no-as-needed", "-l:libpthread.so.0", "-l:libdl.so.2").CombinedOutput()
	if err != nil {
		t.Fatalf("g++: %v\n%s", err, out)
	}
	fn := fnConfig("native", 1)
	fn.MemoryMB = 1024 // a bash loop forking curl is slow at 128 MB's 7% of a CPU
	for i := 1; i <= 2; i++ {
		res := invoke(t, m, fn, dir, `{"n":1}`)
		var p struct {
			Native struct {
				Host     string
				Resolved bool
				Caught   string
				Thread   int
				Dlopen   bool
				Arg      map[string]int
			}
			Certs bool
			Count int
		}
		if err := json.Unmarshal(res.Payload, &p); err != nil || res.ErrorType != "" {
			t.Fatalf("native: %s (%v) tail:\n%s", res.Payload, err, res.LogTail)
		}
		n := p.Native
		if n.Host != sandboxHostname || !n.Resolved || n.Caught != "thrown" || n.Thread != 42 || !n.Dlopen || n.Arg["n"] != 1 {
			t.Errorf("native program saw %+v", n)
		}
		if !p.Certs || p.Count != i {
			t.Errorf("certs %v count %d cold %v (want true, %d: bash arrays keep state across invocations)\n%s", p.Certs, p.Count, res.Cold, i, res.LogTail)
		}
	}
}

// An entry point that cannot be executed is Runtime.InvalidEntrypoint with
// the cause, and a good function runs right after.
func TestInvalidEntrypoint(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	elfOther := make([]byte, 64)
	copy(elfOther, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(elfOther[18:], 183) // aarch64 on this amd64 host
	cases := []struct {
		name    string
		content []byte
		mode    os.FileMode
		missing bool
		link    string // an absolute symlink, resolved only in the sandbox (PID 1 reports its exec)
		want    string
	}{
		{name: "not executable", content: []byte("#!/bin/sh\n"), mode: 0o644, want: "fork/exec /var/task/bootstrap: permission denied"},
		{name: "missing", missing: true, want: "Couldn't find valid bootstrap(s): [/var/task/bootstrap]"},
		{name: "missing interpreter", content: []byte("#!/usr/bin/python3.99\nprint(1)\n"), mode: 0o755, want: "fork/exec /var/task/bootstrap: no such file or directory"},
		{name: "no shebang", content: []byte("echo hi\n"), mode: 0o755, want: "fork/exec /var/task/bootstrap: exec format error"},
		{name: "elf of another machine", content: elfOther, mode: 0o755, want: "fork/exec /var/task/bootstrap: exec format error"},
		{name: "link to nothing", link: "/opt/nothing/bootstrap", want: "fork/exec /var/task/bootstrap: no such file or directory"},
	}
	for i, c := range cases {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		if c.link != "" {
			if err := os.Symlink(c.link, filepath.Join(dir, "bootstrap")); err != nil {
				t.Fatal(err)
			}
		} else if !c.missing {
			if err := os.WriteFile(filepath.Join(dir, "bootstrap"), c.content, c.mode); err != nil {
				t.Fatal(err)
			}
		}
		fn := fnConfig("badentry"+string(rune('a'+i)), 1)
		res := invoke(t, m, fn, dir, `{}`)
		var p rpc.FunctionErrorPayload
		_ = json.Unmarshal(res.Payload, &p)
		if res.ErrorType != rpc.ErrTypeInvalidEntrypoint || p.ErrorType != rpc.ErrTypeInvalidEntrypoint ||
			p.ErrorMessage != "RequestId: "+res.RequestID+" Error: "+c.want {
			t.Errorf("%s: got %s, want Runtime.InvalidEntrypoint %q", c.name, res.Payload, c.want)
		}
		report := strings.Join(sink.linesOf(fn.Name, res.RequestID), "\n")
		if !strings.Contains(report, "Status: error\tError Type: Runtime.InvalidEntrypoint") {
			t.Errorf("%s: log %q lacks the REPORT status", c.name, report)
		}
	}
	if res := invoke(t, m, fnConfig("goodentry", 1), codeDir(t, script("echo.sh")), `1`); res.ErrorType != "" {
		t.Fatalf("a good function after bad entry points: %s", res.Payload)
	}
}

func TestInterpreterOf(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if _, errno := interpreterOf(self[:entrypointHeadBytes], "amd64"); errno != 0 && strings.Contains(string(self[:4]), "ELF") {
		t.Fatalf("this test binary: errno %v", errno)
	}
	sh, _ := os.ReadFile("/bin/bash")
	if len(sh) > entrypointHeadBytes {
		if interp, errno := interpreterOf(sh[:entrypointHeadBytes], "amd64"); errno != 0 || !strings.HasPrefix(interp, "/lib") {
			t.Errorf("/bin/bash: interpreter %q errno %v, want the dynamic loader", interp, errno)
		}
	}
	cases := []struct {
		head   string
		interp string
		errno  syscall.Errno
	}{
		{"#!/bin/sh -e\nx", "/bin/sh", 0},
		{"#! /usr/bin/env node\n", "/usr/bin/env", 0},
		{"#!\n", "", syscall.ENOEXEC},
		{"#!relative\n", "", syscall.ENOENT},
		{"plain text", "", syscall.ENOEXEC},
		{"", "", syscall.ENOEXEC},
	}
	for _, c := range cases {
		interp, errno := interpreterOf([]byte(c.head), "amd64")
		if interp != c.interp || errno != c.errno {
			t.Errorf("%q: %q %v, want %q %v", c.head, interp, errno, c.interp, c.errno)
		}
	}
}

// FuzzInterpreterOf: any bytes, no panic, and an interpreter is an absolute
// path no longer than the bound.
func FuzzInterpreterOf(f *testing.F) {
	f.Add([]byte("#!/bin/sh\n"))
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	if b, err := os.ReadFile("/bin/sh"); err == nil && len(b) > entrypointHeadBytes {
		f.Add(b[:entrypointHeadBytes])
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		interp, _ := interpreterOf(head, "amd64")
		if interp != "" && (!strings.HasPrefix(interp, "/") || (len(interp) > maxInterpPath && !strings.HasPrefix(string(head), "#!"))) {
			t.Fatalf("interpreter %q", interp)
		}
	})
}
