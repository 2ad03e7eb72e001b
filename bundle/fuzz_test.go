package bundle

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seeds are zips worth mutating: valid ones, and one of each fault.
func seeds(f *testing.F) [][]byte {
	return [][]byte{
		mkzip(f),
		mkzip(f, exe("bootstrap", "#!/bin/sh\n"), file("lib/a.txt", "a"), dir("empty/")),
		mkzip(f, link("bootstrap", "bin/app"), exe("bin/app", "x"), link("bin/up", "../bin")),
		mkzip(f, file("../evil", "x")),
		mkzip(f, file("/abs", "x")),
		mkzip(f, link("l", "../../etc"), link("m", "/etc/passwd")),
		mkzip(f, link("x", "."), link("s", "x/..")),
		mkzip(f, dir("d/"), link("l", "d"), file("l/f", "x")),
		mkzip(f, link("a", "b"), link("b", "a")),
		mkzip(f, ent{"p", fs.ModeNamedPipe | 0o644, ""}),
		mkzip(f, file("a", "1"), file("a", "2")),
		mkzip(f, ent{"s", 0o4755, "setuid"}, file("d/./e", "x"), file("a//b", "y")),
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, bootstrap bool) {
		err := Check(data, bootstrap)
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("Check = %v (%T), want an *Error", err, err)
		}
		if err == nil && bootstrap {
			if err := Check(data, false); err != nil {
				t.Fatalf("passes with the bootstrap rule but not without: %v", err)
			}
		}
	})
}

func FuzzExtract(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	base := f.TempDir() // per worker; t.TempDir per input is slower
	f.Fuzz(func(t *testing.T, data []byte) {
		extractAndVerify(t, base, data)
	})
}

// FuzzExtractEntries fuzzes the names and link targets themselves, which
// mutating zip bytes rarely reaches (targets sit behind a CRC). Each line of
// spec is an entry: "F name body", "X name body" (executable), "D name" or
// "L name target".
func FuzzExtractEntries(f *testing.F) {
	for _, s := range []string{
		"X bootstrap #!\nF lib/a x\nL cur lib/a\nD empty/",
		"L x .\nL s x/..",
		"D d/\nL d/x ..\nL s d/x/../..",
		"L a b\nL b a",
		"L l ../../etc\nF ok x",
		"D d/\nL l d\nF l/f x",
		"L up b/../a/./f\nF a/f x\nL b/d ../a",
		"F ./a/./b x\nF a//c y\nL a/l ../a/b",
	} {
		f.Add(s)
	}
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, spec string) {
		var ents []ent
		for line := range strings.SplitSeq(spec, "\n") {
			kind, rest, _ := strings.Cut(line, " ")
			name, arg, _ := strings.Cut(rest, " ")
			if name == "" || strings.HasSuffix(name, "/") != (kind == "D") {
				continue // archive/zip makes dirs of names ending in "/"
			}
			switch kind {
			case "F":
				ents = append(ents, file(name, arg))
			case "X":
				ents = append(ents, exe(name, arg))
			case "D":
				ents = append(ents, dir(name))
			case "L":
				ents = append(ents, link(name, arg))
			}
		}
		extractAndVerify(t, base, mkzip(t, ents...))
	})
}

// extractAndVerify extracts data into a fresh dir under base and checks that
// Extract agrees with Check, that nothing lands outside dst, that modes are
// as promised and that every link leads inside.
func extractAndVerify(t *testing.T, base string, data []byte) {
	parent, err := os.MkdirTemp(base, "")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(parent, "dst")
	err = Extract(data, dst)
	if cerr := Check(data, false); (err == nil) != (cerr == nil) {
		t.Fatalf("Extract = %v but Check = %v", err, cerr)
	}

	// Nothing lands outside dst; on error not even dst.
	top, _ := os.ReadDir(parent)
	if n := len(top); err != nil && n != 1 || err == nil && n != 2 {
		t.Fatalf("parent holds %v after Extract = %v", top, err)
	}
	if e, _ := os.ReadDir(outside); len(e) != 0 {
		t.Fatalf("written outside dst: %v", e)
	}
	if err != nil {
		return
	}
	realDst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		t.Fatal(err)
	}
	walkErr := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			if m.Perm() != 0o755 {
				t.Errorf("%s: mode %v", p, m)
			}
		case m.IsRegular():
			if m.Perm() != 0o644 && m.Perm() != 0o755 {
				t.Errorf("%s: mode %v", p, m)
			}
		case m.Type() == fs.ModeSymlink:
			target, _ := os.Readlink(p)
			if filepath.IsAbs(target) {
				t.Errorf("%s -> %s is absolute", p, target)
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling, or a path through a file: leads nowhere
			}
			if real != realDst && !strings.HasPrefix(real, realDst+string(filepath.Separator)) {
				t.Errorf("%s -> %s resolves to %s, outside %s", p, target, real, dst)
			}
		default:
			t.Errorf("%s: special file %v", p, m)
		}
		return nil
	})
	if walkErr != nil {
		t.Fatal(walkErr)
	}
}
