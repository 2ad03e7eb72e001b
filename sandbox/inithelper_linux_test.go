package sandbox

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/sandbox/containerinit"
)

// helperScript writes an executable shell script named nimbus-init.
func helperScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), InitHelperName)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// runtimeFDs is what gofn's runtime has open, descriptor to target.
func runtimeFDs(t *testing.T, m *Manager, name string) map[string]string {
	t.Helper()
	res := invoke(t, m, fnConfig(name, 1), codeDir(t, gofnBin), `{"do":"fds"}`)
	var out struct{ FDs map[string]string }
	if err := json.Unmarshal(res.Payload, &out); err != nil || res.ErrorType != "" || len(out.FDs) == 0 {
		t.Fatalf("fds: %s (%s)", res.Payload, res.ErrorType)
	}
	return out.FDs
}

// Every container init is handed over to the helper, which sets the
// sandbox up, and the helper's memfd goes no further than PID 1. The
// helper here is a script that notes each start and then runs the real
// nimbus-init.
func TestInitHelperRunsContainerInits(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "started")
	helper := helperScript(t, `[ "$1" = init ] && echo "$1" >>`+marker+"\nexec "+initHelperBin+` "$@"`+"\n")
	m, _ := newTestManager(t, Config{InitHelper: helper, ShellPool: -1})
	if m.initHelper == nil {
		t.Fatal("the helper was not taken")
	}
	fds := runtimeFDs(t, m, "fds")
	for fd, target := range fds {
		if strings.Contains(target, InitHelperName) {
			t.Errorf("the runtime holds the helper's memfd as fd %s (%s)", fd, target)
		}
	}
	b, err := os.ReadFile(marker)
	if err != nil || string(b) != "init\n" {
		t.Fatalf("the helper's starts as the container init: %q (%v), want one", b, err)
	}
}

// With the real helper (as the other tests of this package run), and with
// none, sandboxes start and the runtime holds nothing of either.
func TestInitHelperOnAndOff(t *testing.T) {
	t.Parallel()
	for _, helper := range []string{initHelperBin, "off"} {
		m, _ := newTestManager(t, Config{InitHelper: helper, ShellPool: -1})
		if (m.initHelper != nil) != (helper != "off") {
			t.Fatalf("InitHelper %q: helper taken %v", helper, m.initHelper != nil)
		}
		for fd, target := range runtimeFDs(t, m, "fds-"+filepath.Base(helper)) {
			if strings.Contains(target, "memfd:") {
				t.Errorf("InitHelper %q: the runtime holds a memfd as fd %s (%s)", helper, fd, target)
			}
		}
	}
}

// A helper that is missing, not a program, or built from other versions
// of libcontainer is not used: the agent is its own container init.
func TestInitHelperRefused(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if f := openInitHelper("", self, state, log); f != nil {
		f.Close()
		t.Error("took a helper where there is none (beside the test binary)")
	}
	if f := openInitHelper("off", self, state, log); f != nil {
		f.Close()
		t.Error(`took a helper with "off"`)
	}
	cases := map[string]string{
		"missing":   filepath.Join(t.TempDir(), InitHelperName),
		"directory": t.TempDir(),
		"fails":     helperScript(t, "exit 3\n"),
		"silent":    helperScript(t, "exit 0\n"),
	}
	if own := containerinit.Fingerprint(); own != "" {
		// (A test binary carries no module information to compare.)
		cases["other build"] = helperScript(t, "printf '%s' '"+strings.ReplaceAll(own, "@v", "@v9")+"'\n")
	}
	for name, path := range cases {
		f, err := sealInitHelper(path, state)
		if err == nil {
			f.Close()
			t.Errorf("%s: sealed and taken", name)
			continue
		}
		if name == "other build" && !strings.Contains(err.Error(), "other versions of libcontainer") {
			t.Errorf("%s: %v", name, err)
		}
		if f := openInitHelper(path, self, state, log); f != nil {
			f.Close()
			t.Errorf("%s: openInitHelper took it", name)
		}
	}
	f, err := sealInitHelper(initHelperBin, state)
	if err != nil {
		t.Fatalf("the real helper: %v", err)
	}
	f.Close()
}
