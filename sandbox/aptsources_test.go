package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// The mirror comes from the machine's own sources, deb822 or one-line,
// skipping third-party archives and disabled stanzas.
func TestMachineMirrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		want  aptMirrors
		err   bool
	}{
		{
			name: "deb822 with security",
			files: map[string]string{"etc/apt/sources.list.d/debian.sources": `Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`},
			want: aptMirrors{Main: "http://mirror.example/debian", Security: "http://mirror.example/debian-security"},
		},
		{
			name: "one-line with options, vendor archive first",
			files: map[string]string{
				"etc/apt/sources.list":                 "deb [arch=amd64 signed-by=/k.gpg] https://vendor.example/node nodistro main\n# deb http://commented/debian bookworm main\ndeb http://local.mirror/debian/ trixie main contrib\n",
				"etc/apt/sources.list.d/x.sources":     "Types: deb\nEnabled: no\nURIs: http://disabled/debian\nSuites: trixie\nComponents: main\n",
				"etc/apt/sources.list.d/x.list.broken": "deb http://ignored/debian trixie main\n",
			},
			want: aptMirrors{Main: "http://local.mirror/debian"},
		},
		{name: "none", files: map[string]string{"etc/apt/sources.list": "deb-src http://x/debian trixie main\n"}, err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for p, content := range c.files {
				os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
				if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := machineMirrors(root)
			if (err != nil) != c.err || got != c.want {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, c.want, c.err)
			}
		})
	}
}
