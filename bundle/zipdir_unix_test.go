//go:build unix

package bundle

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"nimbus/rpc"
)

// A folder holding a fifo, a socket or a device is refused with an
// InvalidParameterValueException that names the entry and what it is, not
// Lambda's "Could not unzip" (nothing was unzipped).
func TestZipDirRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind string
		make func(p string) error
		says string
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }, "lib/special is a fifo"},
		{"socket", func(p string) error {
			l, err := net.Listen("unix", p)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		}, "lib/special is a socket"},
		{"device", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) }, "lib/special is a character device"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(root, "lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.make(filepath.Join(root, "lib", "special")); err != nil {
				t.Skipf("cannot make a %s here: %v", tc.kind, err)
			}
			_, err := ZipDir(root)
			var be *Error
			if !errors.Is(err, ErrSpecialFile) || !errors.Is(err, rpc.ErrInvalidParameterValue) || !errors.As(err, &be) {
				t.Fatalf("ZipDir = %v, want ErrSpecialFile as InvalidParameterValueException", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.says) || strings.Contains(msg, "unzip") {
				t.Errorf("error %q, want it to say %q and nothing of unzipping", msg, tc.says)
			}
		})
	}
}
