package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Images are built from the machine's own Debian mirror, as its apt
// sources name it, so the same build works on a machine with a mirror of
// its own (and nothing names a host in the code). The suite comes from the
// recipe; only the archive's URI is taken from the sources.

// aptSourcesMaxBytes bounds what is read of one sources file.
const aptSourcesMaxBytes = 1 << 20

// aptMirrors are the Debian archive URIs of a machine's apt sources: the
// main archive and, when the sources name one, the security archive.
type aptMirrors struct {
	Main, Security string
}

// errNoMirror says the apt sources name no Debian archive.
var errNoMirror = errors.New("the apt sources name no Debian archive (deb lines or .sources entries of Types: deb); pass --mirror URI")

// machineMirrors reads /etc/apt/sources.list and the .list and .sources
// files of /etc/apt/sources.list.d (under root, "/" on a machine).
func machineMirrors(root string) (aptMirrors, error) {
	var m aptMirrors
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		more, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d", pat))
		files = append(files, more...)
	}
	for _, f := range files {
		b, err := readBounded(f, aptSourcesMaxBytes)
		if err != nil {
			continue
		}
		var entries []aptEntry
		if strings.HasSuffix(f, ".sources") {
			entries = parseDeb822Sources(b)
		} else {
			entries = parseOneLineSources(b)
		}
		m.add(entries)
	}
	if m.Main == "" {
		return m, errNoMirror
	}
	return m, nil
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(&limitedReader{f: f, left: max})
	return buf.Bytes(), err
}

type limitedReader struct {
	f    *os.File
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.f.Read(p)
	l.left -= int64(n)
	return n, err
}

// aptEntry is one archive a sources file names for binary packages.
type aptEntry struct {
	uri        string
	suites     []string
	components []string
}

// add keeps the first Debian main archive and the first security archive
// it meets.
func (m *aptMirrors) add(entries []aptEntry) {
	for _, e := range entries {
		if !hasComponent(e, "main") || !strings.Contains(e.uri, "://") {
			continue
		}
		security := false
		for _, s := range e.suites {
			if strings.HasSuffix(s, "-security") || strings.HasSuffix(s, "/updates") {
				security = true
			}
		}
		switch {
		case security && m.Security == "":
			m.Security = e.uri
		case !security && m.Main == "" && isDebianArchive(e):
			m.Main = e.uri
		}
	}
}

// isDebianArchive tells a Debian archive from third-party ones (a vendor's
// repository with suite "nodistro" or "stable" of its own): the suites are
// Debian's codenames or their -updates.
func isDebianArchive(e aptEntry) bool {
	for _, s := range e.suites {
		base, _, _ := strings.Cut(s, "-")
		switch base {
		case "bullseye", "bookworm", "trixie", "forky", "sid", "unstable", "testing", "stable", "oldstable":
			return true
		}
	}
	return false
}

func hasComponent(e aptEntry, c string) bool {
	for _, x := range e.components {
		if x == c {
			return true
		}
	}
	return false
}

// parseOneLineSources reads sources.list lines: "deb [opts] URI suite
// component...".
func parseOneLineSources(b []byte) []aptEntry {
	var out []aptEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 3 {
			continue
		}
		out = append(out, aptEntry{uri: strings.TrimSuffix(f[0], "/"), suites: f[1:2], components: f[2:]})
	}
	return out
}

// parseDeb822Sources reads .sources stanzas (Types, URIs, Suites,
// Components, blank-line separated; Enabled: no skips one).
func parseDeb822Sources(b []byte) []aptEntry {
	var out []aptEntry
	fields := map[string]string{}
	flush := func() {
		if len(fields) == 0 {
			return
		}
		defer func() { fields = map[string]string{} }()
		if strings.EqualFold(fields["enabled"], "no") || !contains(strings.Fields(fields["types"]), "deb") {
			return
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, aptEntry{
				uri:        strings.TrimSuffix(uri, "/"),
				suites:     strings.Fields(fields["suites"]),
				components: strings.Fields(fields["components"]),
			})
		}
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			flush()
			last = ""
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			fields[last] += " " + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		fields[last] = strings.TrimSpace(v)
	}
	flush()
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
