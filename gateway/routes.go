package gateway

import (
	"net/url"
	"strings"

	"nimbus/rpc"
)

// Operations the gateway serves.
const (
	opCreateFunction              = "CreateFunction"
	opGetFunction                 = "GetFunction"
	opGetFunctionConfiguration    = "GetFunctionConfiguration"
	opUpdateFunctionCode          = "UpdateFunctionCode"
	opUpdateFunctionConfiguration = "UpdateFunctionConfiguration"
	opDeleteFunction              = "DeleteFunction"
	opListFunctions               = "ListFunctions"
	opInvoke                      = "Invoke"
	opInvokeWithResponseStream    = "InvokeWithResponseStream"
	opPutFunctionConcurrency      = "PutFunctionConcurrency"
	opGetFunctionConcurrency      = "GetFunctionConcurrency"
	opDeleteFunctionConcurrency   = "DeleteFunctionConcurrency"
	opGetAccountSettings          = "GetAccountSettings"
)

// routes are Lambda's operations by method and path, as the API defines
// them. {F} is a function name (or ARN), {*} any other name. Operations
// without a handler (Gateway.handler) answer NotImplementedException, so
// a caller learns that the operation exists but is not offered yet.
var routes = []struct {
	method, path, op string
}{
	{"POST", "/2015-03-31/functions", opCreateFunction},
	{"GET", "/2015-03-31/functions", opListFunctions},
	{"GET", "/2015-03-31/functions/{F}", opGetFunction},
	{"DELETE", "/2015-03-31/functions/{F}", opDeleteFunction},
	{"GET", "/2015-03-31/functions/{F}/configuration", opGetFunctionConfiguration},
	{"PUT", "/2015-03-31/functions/{F}/configuration", opUpdateFunctionConfiguration},
	{"PUT", "/2015-03-31/functions/{F}/code", opUpdateFunctionCode},
	{"POST", "/2015-03-31/functions/{F}/invocations", opInvoke},
	{"GET", "/2016-08-19/account-settings", opGetAccountSettings},
	{"PUT", "/2017-10-31/functions/{F}/concurrency", opPutFunctionConcurrency},
	{"GET", "/2019-09-30/functions/{F}/concurrency", opGetFunctionConcurrency},
	{"DELETE", "/2017-10-31/functions/{F}/concurrency", opDeleteFunctionConcurrency},

	// Versions and aliases.
	{"POST", "/2015-03-31/functions/{F}/versions", opPublishVersion},
	{"GET", "/2015-03-31/functions/{F}/versions", opListVersionsByFunction},
	{"POST", "/2015-03-31/functions/{F}/aliases", opCreateAlias},
	{"GET", "/2015-03-31/functions/{F}/aliases", opListAliases},
	{"GET", "/2015-03-31/functions/{F}/aliases/{*}", opGetAlias},
	{"PUT", "/2015-03-31/functions/{F}/aliases/{*}", opUpdateAlias},
	{"DELETE", "/2015-03-31/functions/{F}/aliases/{*}", opDeleteAlias},
	// Function URLs.
	{"POST", "/2021-10-31/functions/{F}/url", opCreateFunctionURLConfig},
	{"GET", "/2021-10-31/functions/{F}/url", opGetFunctionURLConfig},
	{"PUT", "/2021-10-31/functions/{F}/url", opUpdateFunctionURLConfig},
	{"DELETE", "/2021-10-31/functions/{F}/url", opDeleteFunctionURLConfig},
	{"GET", "/2021-10-31/functions/{F}/urls", opListFunctionURLConfigs},
	// Asynchronous invocation and event sources.
	{"POST", "/2014-11-13/functions/{F}/invoke-async", "InvokeAsync"},
	{"POST", "/2021-11-15/functions/{F}/response-streaming-invocations", opInvokeWithResponseStream},
	{"PUT", "/2019-09-25/functions/{F}/event-invoke-config", opPutEventInvokeConfig},
	{"POST", "/2019-09-25/functions/{F}/event-invoke-config", opUpdateEventInvokeConfig},
	{"GET", "/2019-09-25/functions/{F}/event-invoke-config", opGetEventInvokeConfig},
	{"DELETE", "/2019-09-25/functions/{F}/event-invoke-config", opDeleteEventInvokeConfig},
	{"GET", "/2019-09-25/functions/{F}/event-invoke-config/list", opListEventInvokeConfigs},
	{"POST", "/2015-03-31/event-source-mappings", opCreateEventSourceMapping},
	{"GET", "/2015-03-31/event-source-mappings", opListEventSourceMappings},
	{"GET", "/2015-03-31/event-source-mappings/{*}", opGetEventSourceMapping},
	{"PUT", "/2015-03-31/event-source-mappings/{*}", opUpdateEventSourceMapping},
	{"DELETE", "/2015-03-31/event-source-mappings/{*}", opDeleteEventSourceMapping},
	// Permissions, tags, layers, provisioned concurrency, code signing.
	{"POST", "/2015-03-31/functions/{F}/policy", "AddPermission"},
	{"GET", "/2015-03-31/functions/{F}/policy", "GetPolicy"},
	{"DELETE", "/2015-03-31/functions/{F}/policy/{*}", "RemovePermission"},
	{"GET", "/2017-03-31/tags/{*}", "ListTags"},
	{"POST", "/2017-03-31/tags/{*}", "TagResource"},
	{"DELETE", "/2017-03-31/tags/{*}", "UntagResource"},
	{"GET", "/2018-10-31/layers", opListLayers},
	{"POST", "/2018-10-31/layers/{*}/versions", opPublishLayerVersion},
	{"GET", "/2018-10-31/layers/{*}/versions", opListLayerVersions},
	{"GET", "/2018-10-31/layers/{*}/versions/{*}", opGetLayerVersion},
	{"DELETE", "/2018-10-31/layers/{*}/versions/{*}", opDeleteLayerVersion},
	{"PUT", "/2019-09-30/functions/{F}/provisioned-concurrency", "PutProvisionedConcurrencyConfig"},
	{"GET", "/2019-09-30/functions/{F}/provisioned-concurrency", "GetProvisionedConcurrencyConfig"},
	{"DELETE", "/2019-09-30/functions/{F}/provisioned-concurrency", "DeleteProvisionedConcurrencyConfig"},
	{"GET", "/2020-06-30/functions/{F}/code-signing-config", "GetFunctionCodeSigningConfig"},
}

// pathArgs are the names a path carries, unescaped.
type pathArgs struct {
	Function string
	// Name is the {*} segment, when the path has one (an alias name, an
	// event source mapping's UUID, a layer's name).
	Name string
	// Sub is a second {*} segment (a layer's version).
	Sub string
}

// maxPathSegments bounds the work route does on a path.
const maxPathSegments = 8

// routeTable is routes with each path split into segments, built once;
// it is never changed.
var routeTable = func() [][]string {
	t := make([][]string, len(routes))
	for i, rt := range routes {
		t[i] = strings.Split(strings.TrimPrefix(rt.path, "/"), "/")
	}
	return t
}()

// route finds the operation for method and the escaped path. A trailing
// slash is ignored (the SDKs send some paths with one).
func route(method, escapedPath string) (string, pathArgs, error) {
	var a pathArgs
	p := strings.TrimSuffix(escapedPath, "/")
	segs := strings.SplitN(strings.TrimPrefix(p, "/"), "/", maxPathSegments+1)
	if len(segs) > maxPathSegments {
		return "", a, unknownOperation()
	}
next:
	for i, pat := range routeTable {
		if len(pat) != len(segs) || routes[i].method != method {
			continue
		}
		var fn string
		for j, ps := range pat {
			switch ps {
			case "{F}", "{*}":
				v, err := url.PathUnescape(segs[j])
				if err != nil || v == "" {
					continue next
				}
				switch {
				case ps == "{F}":
					fn = v
				case a.Name == "":
					a.Name = v
				default:
					a.Sub = v
				}
			default:
				if segs[j] != ps {
					continue next
				}
			}
		}
		a.Function = fn
		return routes[i].op, a, nil
	}
	return "", a, unknownOperation()
}

// notImplementedWhy says, for the operations that answer
// NotImplementedException, what they wait for.
func notImplementedWhy(op string) string {
	switch op {
	case "InvokeAsync":
		return ": use Invoke with InvocationType Event"
	}
	return ""
}

func unknownOperation() error {
	return rpc.Errorf(CodeUnknownOperation, "Unknown operation")
}
