package bundle

import (
	"archive/zip"
	"fmt"
	"sort"
	"strings"
)

// Limits on names, as Linux has them: a longer name could pass Check and
// then fail to extract.
const (
	maxPathLen      = 4095 // PATH_MAX less the NUL
	maxComponentLen = 255  // NAME_MAX
	maxLinkHops     = 40   // Linux's MAXSYMLINKS
	// resolveBudget bounds the work of resolving every symlink of one zip,
	// so crafted chains cannot make Check slow. Real bundles use a tiny part.
	resolveBudget = 1 << 22
)

type nodeKind uint8

const (
	kindDir nodeKind = iota
	kindFile
	kindLink
)

// node is one path of a bundle as it would be on disk. Nodes are built by
// parse and never changed after it returns.
type node struct {
	name     string // slash path from the root; "" for the root
	kind     nodeKind
	parent   *node            // nil for the root
	children map[string]*node // dirs only
	exec     bool             // files: the entry has an x bit
	target   string           // links: the link's text
	file     *zip.File        // files and links; nil for dirs
}

// tree is the model of a zip's content that Check validates and Extract
// writes. Entries never sit below a file or a symlink, names are unique and
// clean, and every symlink resolves inside the root.
type tree struct {
	root   *node
	files  []*node // in zip order
	links  []*node // in zip order
	budget int     // resolve steps left
}

func newTree() *tree {
	return &tree{root: &node{kind: kindDir, children: map[string]*node{}}, budget: resolveBudget}
}

// cleanName turns a zip entry name into a clean slash path relative to the
// root ("" is the root itself), or says why it is unsafe.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("empty entry name")
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("entry name %q holds a NUL byte", name)
	case strings.ContainsRune(name, '\\'):
		return "", fmt.Errorf("entry name %q holds a backslash", name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("entry name %q is absolute", name)
	}
	var parts []string
	for c := range strings.SplitSeq(name, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return "", fmt.Errorf("entry name %q holds \"..\"", name)
		case len(c) > maxComponentLen:
			return "", fmt.Errorf("entry name %q has a component longer than %d bytes", name, maxComponentLen)
		}
		parts = append(parts, c)
	}
	p := strings.Join(parts, "/")
	if len(p) > maxPathLen {
		return "", fmt.Errorf("entry name %q is longer than %d bytes", name, maxPathLen)
	}
	return p, nil
}

// add puts an entry at the clean path p, creating the dirs above it.
func (t *tree) add(p string, kind nodeKind, f *zip.File) (*node, error) {
	if p == "" {
		if kind != kindDir {
			return nil, unzipError(ErrUnsafePath, fmt.Sprintf("entry %q names the root but is not a directory", f.Name))
		}
		return t.root, nil
	}
	parts := strings.Split(p, "/")
	dir := t.root
	for i, c := range parts[:len(parts)-1] {
		n := dir.children[c]
		if n == nil {
			n = &node{name: strings.Join(parts[:i+1], "/"), kind: kindDir, parent: dir, children: map[string]*node{}}
			dir.children[c] = n
		} else if n.kind != kindDir {
			return nil, unzipError(ErrUnsafePath, fmt.Sprintf("entry %q lies below non-directory %q", f.Name, n.name))
		}
		dir = n
	}
	last := parts[len(parts)-1]
	if n := dir.children[last]; n != nil {
		if n.kind == kindDir && kind == kindDir {
			return n, nil // the same dir twice, or a dir named after its content
		}
		return nil, unzipError(ErrUnsafePath, fmt.Sprintf("entry %q clashes with another entry at %q", f.Name, n.name))
	}
	n := &node{name: p, kind: kind, parent: dir, file: f}
	if kind == kindDir {
		n.children = map[string]*node{}
		n.file = nil
	}
	dir.children[last] = n
	switch kind {
	case kindFile:
		t.files = append(t.files, n)
	case kindLink:
		t.links = append(t.links, n)
	}
	return n, nil
}

// errEscape and friends say why a symlink is refused; checkLinks wraps them.
var (
	errEscape  = fmt.Errorf("resolves outside the bundle")
	errLoop    = fmt.Errorf("is a loop of more than %d links", maxLinkHops)
	errComplex = fmt.Errorf("is too costly to resolve")
)

// resolve follows target from dir the way the kernel would, through the
// bundle's own symlinks, and returns the node it ends at (nil when the path
// does not exist in the bundle). A ".." above the root, through a link or
// not, is an error: at runtime it would leave the bundle.
func (t *tree) resolve(dir *node, target string) (*node, error) {
	var stack []*node // root first; nil entries are paths missing from the bundle
	for n := dir; n != nil; n = n.parent {
		stack = append(stack, n)
	}
	for i, j := 0, len(stack)-1; i < j; i, j = i+1, j-1 {
		stack[i], stack[j] = stack[j], stack[i]
	}
	var todo []string // components still to walk, the next one last
	push := func(s string) error {
		parts := strings.Split(s, "/")
		t.budget -= len(parts)
		if t.budget < 0 {
			return errComplex
		}
		for i := len(parts) - 1; i >= 0; i-- {
			todo = append(todo, parts[i])
		}
		return nil
	}
	if err := push(target); err != nil {
		return nil, err
	}
	hops := 0
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 1 {
				return nil, errEscape
			}
			stack = stack[:len(stack)-1]
			continue
		}
		var n *node
		if top := stack[len(stack)-1]; top != nil && top.kind == kindDir {
			n = top.children[c]
		}
		if n != nil && n.kind == kindLink {
			if hops++; hops > maxLinkHops {
				return nil, errLoop
			}
			if err := push(n.target); err != nil {
				return nil, err
			}
			continue
		}
		stack = append(stack, n)
	}
	return stack[len(stack)-1], nil
}

// checkLinks validates every symlink's text and where it leads.
func (t *tree) checkLinks() error {
	for _, l := range t.links {
		bad := func(why string) error {
			return unzipError(ErrUnsafeSymlink, fmt.Sprintf("symlink %q -> %q %s", l.name, l.target, why))
		}
		switch {
		case l.target == "":
			return bad("is empty")
		case strings.ContainsRune(l.target, 0):
			return bad("holds a NUL byte")
		case strings.HasPrefix(l.target, "/"):
			return bad("is absolute")
		case len(l.target) > maxPathLen:
			return bad("is too long")
		}
		if _, err := t.resolve(l.parent, l.target); err != nil {
			return bad(err.Error())
		}
	}
	return nil
}

// checkBootstrap requires an executable regular file at the root named
// bootstrap, or a symlink there that leads to one.
func (t *tree) checkBootstrap() error {
	n := t.root.children["bootstrap"]
	if n != nil && n.kind == kindLink {
		var err error
		if n, err = t.resolve(t.root, "bootstrap"); err != nil {
			return &Error{Kind: ErrNoBootstrap, Msg: msgBootstrap, Detail: "bootstrap: " + err.Error()}
		}
	}
	switch {
	case n == nil:
		return &Error{Kind: ErrNoBootstrap, Msg: msgBootstrap, Detail: "no file named bootstrap at the root of the zip"}
	case n.kind != kindFile:
		return &Error{Kind: ErrNoBootstrap, Msg: msgBootstrap, Detail: "bootstrap is not a regular file"}
	case !n.exec:
		return &Error{Kind: ErrNoBootstrap, Msg: msgBootstrap, Detail: "bootstrap is not executable: set its x bit before zipping"}
	}
	return nil
}

// dirs lists every directory below the root, each after its parent.
func (t *tree) dirs() []*node {
	var out []*node
	var walk func(d *node)
	walk = func(d *node) {
		names := make([]string, 0, len(d.children))
		for name, c := range d.children {
			if c.kind == kindDir {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			c := d.children[name]
			out = append(out, c)
			walk(c)
		}
	}
	walk(t.root)
	return out
}
