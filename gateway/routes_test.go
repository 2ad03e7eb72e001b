package gateway

import (
	"errors"
	"testing"

	"nimbus/rpc"
)

func TestRoute(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, path string
		op, fn       string
	}{
		{"POST", "/2015-03-31/functions", opCreateFunction, ""},
		{"GET", "/2015-03-31/functions/", opListFunctions, ""},
		{"GET", "/2015-03-31/functions/f", opGetFunction, "f"},
		{"DELETE", "/2015-03-31/functions/f", opDeleteFunction, "f"},
		{"GET", "/2015-03-31/functions/f/configuration", opGetFunctionConfiguration, "f"},
		{"PUT", "/2015-03-31/functions/f/configuration", opUpdateFunctionConfiguration, "f"},
		{"PUT", "/2015-03-31/functions/f/code", opUpdateFunctionCode, "f"},
		{"POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations", opInvoke,
			"arn:aws:lambda:us-east-1:123456789012:function:f"},
		{"GET", "/2016-08-19/account-settings/", opGetAccountSettings, ""},
		{"PUT", "/2017-10-31/functions/f/concurrency", opPutFunctionConcurrency, "f"},
		{"GET", "/2019-09-30/functions/f/concurrency", opGetFunctionConcurrency, "f"},
		{"DELETE", "/2017-10-31/functions/f/concurrency", opDeleteFunctionConcurrency, "f"},
		{"POST", "/2015-03-31/functions/f/versions", "PublishVersion", "f"},
		{"GET", "/2015-03-31/functions/f/aliases/live", "GetAlias", "f"},
		{"POST", "/2021-10-31/functions/f/url", "CreateFunctionUrlConfig", "f"},
	}
	for _, c := range cases {
		op, a, err := route(c.method, c.path)
		if err != nil || op != c.op || a.Function != c.fn {
			t.Errorf("route(%s %s) = %q, %q, %v; want %q, %q", c.method, c.path, op, a.Function, err, c.op, c.fn)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/2015-03-31"},
		{"PATCH", "/2015-03-31/functions/f"},
		{"GET", "/2015-03-31/functions/f/invocations"},
		{"POST", "/2015-03-31/functions/f/nothing"},
		{"GET", "/2015-03-31/functions//configuration"},
		{"GET", "/2015-03-31/functions/%zz/configuration"},
		{"GET", "/2015-03-31/functions/f/a/b/c/d/e/f/g/h/i"},
		{"GET", "/2019-09-30/functions/f/code"},
	} {
		if op, _, err := route(c.method, c.path); !errors.Is(err, &rpc.Error{Code: CodeUnknownOperation}) {
			t.Errorf("route(%s %s) = %q, %v; want UnknownOperationException", c.method, c.path, op, err)
		}
	}
}

func TestRoutesHaveHandlersOrReasons(t *testing.T) {
	t.Parallel()
	g := &Gateway{}
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.method + " " + rt.path
		if seen[key] {
			t.Errorf("route %s listed twice", key)
		}
		seen[key] = true
		if g.handler(rt.op) == nil && rt.op[0] >= 'a' {
			t.Errorf("route %s: operation %q starts lowercase", key, rt.op)
		}
	}
	for _, op := range []string{opCreateFunction, opGetFunction, opGetFunctionConfiguration, opUpdateFunctionCode,
		opUpdateFunctionConfiguration, opDeleteFunction, opListFunctions, opInvoke, opPutFunctionConcurrency,
		opGetFunctionConcurrency, opDeleteFunctionConcurrency, opGetAccountSettings} {
		if g.handler(op) == nil {
			t.Errorf("operation %s has no handler", op)
		}
	}
}

func TestParseFunctionRef(t *testing.T) {
	t.Parallel()
	ok := []struct {
		ref, query string
		want       functionRef
	}{
		{"f", "", functionRef{Name: "f", Qualifier: ""}},
		{"f", "$LATEST", functionRef{Name: "f", Qualifier: "$LATEST"}},
		{"f:3", "", functionRef{Name: "f", Qualifier: "3"}},
		{"f:live", "live", functionRef{Name: "f", Qualifier: "live"}},
		{"123456789012:function:f", "", functionRef{Name: "f", Qualifier: ""}},
		{"123456789012:function:f:2", "", functionRef{Name: "f", Qualifier: "2"}},
		{"arn:aws:lambda:us-east-1:123456789012:function:f", "", functionRef{Name: "f", Qualifier: ""}},
		{"arn:aws:lambda:local:000000000000:function:f:$LATEST", "", functionRef{Name: "f", Qualifier: "$LATEST"}},
	}
	for _, c := range ok {
		got, err := parseFunctionRef(c.ref, c.query)
		if err != nil || got != c.want {
			t.Errorf("parseFunctionRef(%q, %q) = %+v, %v; want %+v", c.ref, c.query, got, err, c.want)
		}
	}
	bad := []struct{ ref, query string }{
		{"f:1", "2"},
		{"f:", ""},
		{"a:b:c", ""},
		{"arn:aws:s3:::bucket", ""},
		{"arn:aws:lambda:us-east-1:123456789012:function:f:1:2", ""},
		{string(make([]byte, maxFunctionRef+1)), ""},
	}
	for _, c := range bad {
		if got, err := parseFunctionRef(c.ref, c.query); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("parseFunctionRef(%q, %q) = %+v, %v; want InvalidParameterValueException", c.ref, c.query, got, err)
		}
	}
}

func FuzzRoute(f *testing.F) {
	for _, rt := range routes {
		f.Add(rt.method, rt.path)
	}
	f.Add("GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Ar%3A1%3Afunction%3Af%3A1/configuration")
	f.Add("POST", "//////")
	f.Fuzz(func(t *testing.T, method, path string) {
		op, a, err := route(method, path)
		if err != nil {
			if !errors.Is(err, &rpc.Error{Code: CodeUnknownOperation}) {
				t.Fatalf("route error %v is not UnknownOperationException", err)
			}
			return
		}
		if op == "" {
			t.Fatal("no operation and no error")
		}
		if _, err := parseFunctionRef(a.Function, ""); err != nil && !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Fatalf("parseFunctionRef(%q): %v", a.Function, err)
		}
	})
}

func FuzzParseFunctionRef(f *testing.F) {
	f.Add("f", "")
	f.Add("f:1", "1")
	f.Add("arn:aws:lambda:us-east-1:123456789012:function:f:live", "")
	f.Add("123456789012:function:f", "$LATEST")
	f.Fuzz(func(t *testing.T, ref, query string) {
		got, err := parseFunctionRef(ref, query)
		if err != nil {
			if !errors.Is(err, rpc.ErrInvalidParameterValue) {
				t.Fatalf("error %v is not InvalidParameterValueException", err)
			}
			return
		}
		if len(got.Name) > len(ref) {
			t.Fatalf("name %q longer than the reference %q", got.Name, ref)
		}
		if query != "" && got.Qualifier != query {
			t.Fatalf("qualifier %q, query %q", got.Qualifier, query)
		}
	})
}
