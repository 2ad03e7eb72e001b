package logstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// MaxFilterLen is the longest filter pattern accepted (CloudWatch's bound).
const MaxFilterLen = 1024

// maxRegexps bounds the regular expressions of one pattern.
const maxRegexps = 5

// Filter is a compiled CloudWatch filter pattern. A nil *Filter (the empty
// pattern) matches every line. A Filter is immutable and safe for
// concurrent use.
//
// Two forms, as CloudWatch has them:
//
//   - text: space-separated terms, each a bare word, a "quoted phrase" or
//     a %regular expression%; every plain term must occur (case-sensitive
//     substring), at least one of the terms written ?term must occur if
//     there are any, and none of the terms written -term may occur;
//   - JSON: { expr } where expr compares selectors of a JSON log line,
//     $.a.b[0], with = != < > <= >= against numbers, "strings", bare words
//     (where * is a wildcard), %regex%, or tests them with IS NULL, IS
//     TRUE, IS FALSE, EXISTS, NOT EXISTS; joined with && and || and
//     grouped with parentheses. A line that is not a JSON object (or has
//     none after a prefix, as runtimes write "time id level {...}") does
//     not match.
type Filter struct {
	all, any, none []textTerm
	json           node
}

// FilterError is a malformed pattern; Pos is 1-based, in bytes.
type FilterError struct {
	Pos int
	Msg string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("invalid filter pattern at position %d: %s", e.Pos, e.Msg)
}

type textTerm struct {
	lit string
	re  *regexp.Regexp
}

func (t textTerm) match(line string) bool {
	if t.re != nil {
		return t.re.MatchString(line)
	}
	return strings.Contains(line, t.lit)
}

// Match reports whether line matches the pattern.
func (f *Filter) Match(line string) bool {
	if f == nil {
		return true
	}
	if f.json != nil {
		doc, ok := jsonOf(line)
		return ok && f.json.eval(doc)
	}
	for _, t := range f.all {
		if !t.match(line) {
			return false
		}
	}
	for _, t := range f.none {
		if t.match(line) {
			return false
		}
	}
	if len(f.any) == 0 {
		return true
	}
	for _, t := range f.any {
		if t.match(line) {
			return true
		}
	}
	return false
}

// ParseFilter compiles a pattern; "" (or only spaces) gives nil, which
// matches everything.
func ParseFilter(pattern string) (*Filter, error) {
	if len(pattern) > MaxFilterLen {
		return nil, &FilterError{Pos: MaxFilterLen + 1, Msg: fmt.Sprintf("a pattern is at most %d bytes", MaxFilterLen)}
	}
	p := &parser{s: pattern}
	p.skipSpace()
	if p.eof() {
		return nil, nil
	}
	f := &Filter{}
	if p.peek() == '{' {
		p.pos++
		n, err := p.orExpr()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if !p.eat('}') {
			return nil, p.errf("expected '}' or an operator (&&, ||)")
		}
		p.skipSpace()
		if !p.eof() {
			return nil, p.errf("unexpected text after '}'")
		}
		f.json = n
		return f, nil
	}
	for !p.eof() {
		kind := byte(0)
		if c := p.peek(); c == '?' || c == '-' {
			kind = c
			p.pos++
			if p.eof() || isSpace(p.peek()) {
				return nil, p.errf("expected a term after '%c'", kind)
			}
		}
		t, err := p.textTerm()
		if err != nil {
			return nil, err
		}
		switch kind {
		case '?':
			f.any = append(f.any, t)
		case '-':
			f.none = append(f.none, t)
		default:
			f.all = append(f.all, t)
		}
		p.skipSpace()
	}
	return f, nil
}

type parser struct {
	s       string
	pos     int
	regexps int
}

func (p *parser) eof() bool  { return p.pos >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.pos] }
func (p *parser) eat(c byte) bool {
	if !p.eof() && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}
func (p *parser) errf(format string, args ...any) error {
	return &FilterError{Pos: p.pos + 1, Msg: fmt.Sprintf(format, args...)}
}
func (p *parser) skipSpace() {
	for !p.eof() && isSpace(p.peek()) {
		p.pos++
	}
}
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *parser) textTerm() (textTerm, error) {
	switch p.peek() {
	case '"':
		s, err := p.quoted()
		return textTerm{lit: s}, err
	case '%':
		re, err := p.regex()
		return textTerm{re: re}, err
	}
	start := p.pos
	for !p.eof() && !isSpace(p.peek()) {
		if c := p.peek(); c == '"' || c == '{' || c == '}' {
			return textTerm{}, p.errf("unexpected %q in a term (quote the term)", c)
		}
		p.pos++
	}
	return textTerm{lit: p.s[start:p.pos]}, nil
}

// quoted reads "..." with \" and \\ escapes; p is at the opening quote.
func (p *parser) quoted() (string, error) {
	start := p.pos
	p.pos++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch c {
		case '"':
			p.pos++
			return b.String(), nil
		case '\\':
			if p.pos+1 < len(p.s) && (p.s[p.pos+1] == '"' || p.s[p.pos+1] == '\\') {
				b.WriteByte(p.s[p.pos+1])
				p.pos += 2
				continue
			}
		}
		b.WriteByte(c)
		p.pos++
	}
	return "", &FilterError{Pos: start + 1, Msg: "unterminated quoted string"}
}

// regex reads %...% (a % inside is written \%); p is at the opening %.
func (p *parser) regex() (*regexp.Regexp, error) {
	start := p.pos
	p.pos++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		if c == '%' {
			p.pos++
			if b.Len() == 0 {
				return nil, &FilterError{Pos: start + 1, Msg: "empty regular expression"}
			}
			if p.regexps++; p.regexps > maxRegexps {
				return nil, &FilterError{Pos: start + 1, Msg: fmt.Sprintf("at most %d regular expressions in a pattern", maxRegexps)}
			}
			re, err := regexp.Compile(b.String())
			if err != nil {
				return nil, &FilterError{Pos: start + 1, Msg: "bad regular expression: " + err.Error()}
			}
			return re, nil
		}
		if c == '\\' && p.pos+1 < len(p.s) && p.s[p.pos+1] == '%' {
			b.WriteByte('%')
			p.pos += 2
			continue
		}
		b.WriteByte(c)
		p.pos++
	}
	return nil, &FilterError{Pos: start + 1, Msg: "unterminated regular expression (missing %)"}
}

// JSON expressions.

// node is a JSON pattern's expression tree.
type node interface{ eval(doc any) bool }

type orNode []node
type andNode []node

func (o orNode) eval(doc any) bool {
	for _, n := range o {
		if n.eval(doc) {
			return true
		}
	}
	return false
}

func (a andNode) eval(doc any) bool {
	for _, n := range a {
		if !n.eval(doc) {
			return false
		}
	}
	return true
}

// maxDepth bounds the nesting of parentheses in a pattern.
const maxDepth = 32

func (p *parser) orExpr() (node, error) { return p.orDepth(0) }

func (p *parser) orDepth(depth int) (node, error) {
	first, err := p.andExpr(depth)
	if err != nil {
		return nil, err
	}
	or := orNode{first}
	for {
		p.skipSpace()
		if !strings.HasPrefix(p.s[p.pos:], "||") {
			break
		}
		p.pos += 2
		n, err := p.andExpr(depth)
		if err != nil {
			return nil, err
		}
		or = append(or, n)
	}
	if len(or) == 1 {
		return first, nil
	}
	return or, nil
}

func (p *parser) andExpr(depth int) (node, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	and := andNode{first}
	for {
		p.skipSpace()
		if !strings.HasPrefix(p.s[p.pos:], "&&") {
			break
		}
		p.pos += 2
		n, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		and = append(and, n)
	}
	if len(and) == 1 {
		return first, nil
	}
	return and, nil
}

func (p *parser) unary(depth int) (node, error) {
	p.skipSpace()
	if p.eof() {
		return nil, p.errf("expected a selector ($.field) or '('")
	}
	if p.peek() == '(' {
		if depth >= maxDepth {
			return nil, p.errf("parentheses nested deeper than %d", maxDepth)
		}
		p.pos++
		n, err := p.orDepth(depth + 1)
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if !p.eat(')') {
			return nil, p.errf("expected ')'")
		}
		return n, nil
	}
	return p.comparison()
}

// selector is a path into a JSON document: field names and array indexes.
type selector []pathStep

type pathStep struct {
	field string
	index int // when field == "" and isIndex
	isIdx bool
}

func (p *parser) selector() (selector, error) {
	if !p.eat('$') {
		return nil, p.errf("expected a selector starting with '$'")
	}
	var sel selector
	for !p.eof() {
		switch p.peek() {
		case '.':
			p.pos++
			start := p.pos
			for !p.eof() && isIdentByte(p.peek()) {
				p.pos++
			}
			if p.pos == start {
				return nil, p.errf("expected a field name after '.'")
			}
			sel = append(sel, pathStep{field: p.s[start:p.pos]})
		case '[':
			p.pos++
			start := p.pos
			for !p.eof() && p.peek() >= '0' && p.peek() <= '9' {
				p.pos++
			}
			idx, err := strconv.Atoi(p.s[start:p.pos])
			if err != nil || idx > 1<<20 {
				return nil, p.errf("expected an array index")
			}
			if !p.eat(']') {
				return nil, p.errf("expected ']'")
			}
			sel = append(sel, pathStep{index: idx, isIdx: true})
		default:
			if len(sel) == 0 {
				return nil, p.errf("expected '.' or '[' after '$'")
			}
			return sel, nil
		}
	}
	if len(sel) == 0 {
		return nil, p.errf("expected '.' or '[' after '$'")
	}
	return sel, nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '@' || c >= 0x80
}

// lookup returns the value at sel in doc and whether it exists.
func (sel selector) lookup(doc any) (any, bool) {
	v := doc
	for _, st := range sel {
		if st.isIdx {
			arr, ok := v.([]any)
			if !ok || st.index >= len(arr) {
				return nil, false
			}
			v = arr[st.index]
			continue
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[st.field]; !ok {
			return nil, false
		}
	}
	return v, true
}

type cmpOp int

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

// comparison is one test of a selector.
type comparison struct {
	sel selector
	op  cmpOp
	// One of: a number, a string (glob with * when wild), a regexp, or a
	// test (isNull, isTrue, isFalse, exists, notExists).
	num  *float64
	str  *string
	wild *regexp.Regexp
	re   *regexp.Regexp
	test string
}

func (p *parser) comparison() (node, error) {
	sel, err := p.selector()
	if err != nil {
		return nil, err
	}
	c := &comparison{sel: sel}
	p.skipSpace()
	if p.eof() {
		return nil, p.errf("expected an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS)")
	}
	rest := p.s[p.pos:]
	switch {
	case hasWord(rest, "IS"):
		p.pos += 2
		p.skipSpace()
		for _, w := range []string{"NULL", "TRUE", "FALSE"} {
			if hasWord(p.s[p.pos:], w) {
				p.pos += len(w)
				c.test = w
				return c, nil
			}
		}
		return nil, p.errf("expected NULL, TRUE or FALSE after IS")
	case hasWord(rest, "NOT"):
		p.pos += 3
		p.skipSpace()
		if !hasWord(p.s[p.pos:], "EXISTS") {
			return nil, p.errf("expected EXISTS after NOT")
		}
		p.pos += len("EXISTS")
		c.test = "NOT EXISTS"
		return c, nil
	case hasWord(rest, "EXISTS"):
		p.pos += len("EXISTS")
		c.test = "EXISTS"
		return c, nil
	case strings.HasPrefix(rest, "!="):
		c.op, p.pos = opNe, p.pos+2
	case strings.HasPrefix(rest, "<="):
		c.op, p.pos = opLe, p.pos+2
	case strings.HasPrefix(rest, ">="):
		c.op, p.pos = opGe, p.pos+2
	case strings.HasPrefix(rest, "="):
		c.op, p.pos = opEq, p.pos+1
		p.eat('=') // == is accepted as =
	case strings.HasPrefix(rest, "<"):
		c.op, p.pos = opLt, p.pos+1
	case strings.HasPrefix(rest, ">"):
		c.op, p.pos = opGt, p.pos+1
	default:
		return nil, p.errf("expected an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS)")
	}
	p.skipSpace()
	if p.eof() {
		return nil, p.errf("expected a value")
	}
	ordered := c.op != opEq && c.op != opNe
	switch ch := p.peek(); {
	case ch == '"':
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		if ordered {
			return nil, p.errf("%s compares numbers, not strings", opName(c.op))
		}
		c.setString(s)
	case ch == '%':
		at := p.pos
		re, err := p.regex()
		if err != nil {
			return nil, err
		}
		if ordered {
			return nil, &FilterError{Pos: at + 1, Msg: opName(c.op) + " compares numbers, not regular expressions"}
		}
		c.re = re
	default:
		start := p.pos
		for !p.eof() && !isSpace(p.peek()) && !strings.ContainsRune("(){}&|", rune(p.peek())) {
			p.pos++
		}
		word := p.s[start:p.pos]
		if word == "" {
			return nil, p.errf("expected a value")
		}
		if f, err := strconv.ParseFloat(word, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			c.num = &f
		} else if ordered {
			return nil, &FilterError{Pos: start + 1, Msg: fmt.Sprintf("%s needs a number, not %q", opName(c.op), word)}
		} else {
			c.setString(word)
		}
	}
	return c, nil
}

func (c *comparison) setString(s string) {
	c.str = &s
	if strings.Contains(s, "*") {
		parts := strings.Split(s, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		c.wild = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	}
}

func opName(op cmpOp) string {
	return [...]string{"=", "!=", "<", "<=", ">", ">="}[op]
}

// hasWord reports whether s starts with the keyword w followed by a
// non-identifier byte (or the end).
func hasWord(s, w string) bool {
	return strings.HasPrefix(s, w) && (len(s) == len(w) || !isIdentByte(s[len(w)]))
}

func (c *comparison) eval(doc any) bool {
	v, ok := c.sel.lookup(doc)
	switch c.test {
	case "NOT EXISTS":
		return !ok
	case "EXISTS":
		return ok
	case "NULL":
		return ok && v == nil
	case "TRUE":
		b, isBool := v.(bool)
		return ok && isBool && b
	case "FALSE":
		b, isBool := v.(bool)
		return ok && isBool && !b
	}
	if !ok {
		return false
	}
	var eq bool
	switch {
	case c.num != nil:
		f, isNum := number(v)
		if !isNum {
			return false
		}
		switch c.op {
		case opLt:
			return f < *c.num
		case opLe:
			return f <= *c.num
		case opGt:
			return f > *c.num
		case opGe:
			return f >= *c.num
		}
		eq = f == *c.num
	case c.re != nil:
		s, isStr := scalarString(v)
		eq = isStr && c.re.MatchString(s)
	default:
		s, isStr := scalarString(v)
		if c.wild != nil {
			eq = isStr && c.wild.MatchString(s)
		} else {
			eq = isStr && s == *c.str
		}
	}
	if c.op == opNe {
		return !eq
	}
	return eq
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// scalarString is v as text when v is a string, number or boolean.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// jsonOf decodes line as a JSON object: the whole line, or from its first
// '{' (runtimes prefix JSON with a time, a request id and a level).
func jsonOf(line string) (any, bool) {
	i := strings.IndexByte(line, '{')
	if i < 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(line[i:])))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, false
	}
	return doc, true
}
