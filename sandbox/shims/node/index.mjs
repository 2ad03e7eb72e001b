// nimbus's Node.js runtime: loads the function's handler (CommonJS, or an
// ES module in .mjs or under "type": "module") and serves it over the
// Lambda Runtime API. Node's standard library only.
//
//   init:  resolve _HANDLER ("dir/file.export[.nested]"), load the module,
//          find the function; a failure goes to /init/error with Lambda's
//          names (Runtime.ImportModuleError, Runtime.HandlerNotFound,
//          Runtime.UserCodeSyntaxError, Runtime.MalformedHandlerName).
//   loop:  GET /next, call the handler (async: its promise; callback: the
//          callback, answered once the event loop is empty unless
//          context.callbackWaitsForEmptyEventLoop is false), POST the result
//          or {"errorType", "errorMessage", "trace"}.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import util from "node:util";

const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || "/var/task";
const [API_HOST, API_PORT] = (() => {
  const a = process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001";
  const i = a.lastIndexOf(":");
  return [a.slice(0, i), Number(a.slice(i + 1))];
})();
const BASE = "/2018-06-01/runtime";

// One request to the Runtime API. No keep-alive: an idle socket would keep
// the event loop from ever being empty, which callback handlers wait for.
function call(method, p, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(
      { host: API_HOST, port: API_PORT, method, path: BASE + p, agent: false, headers: data ? { ...headers, "Content-Length": data.length } : headers },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

// Logging in Lambda's format: <time>Z\t<request id>\t<LEVEL>\t<message>,
// a record's newlines written as \r so that one record is one line.
let currentRequestId = "";
function patchConsole() {
  const write = (level) => (...args) => {
    const msg = util.format(...args).replace(/\n/g, "\r");
    process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${msg}\n`);
  };
  console.log = write("INFO");
  console.info = write("INFO");
  console.warn = write("WARN");
  console.error = write("ERROR");
  console.debug = write("DEBUG");
  console.trace = write("TRACE");
}

function errorBody(err) {
  if (err instanceof Error) {
    return {
      errorType: err.name || "Error",
      errorMessage: err.message,
      trace: String(err.stack || "").split("\n"),
    };
  }
  return { errorType: typeof err === "string" ? "string" : typeof err, errorMessage: typeof err === "string" ? err : JSON.stringify(err), trace: [] };
}

class InitError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.errorType = type;
    this.trace = cause && cause.stack ? String(cause.stack).split("\n") : [];
  }
}

function isModuleTree(file) {
  // The nearest package.json between the file and the task root decides.
  let dir = path.dirname(file);
  for (;;) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, "utf8")).type === "module";
      } catch {
        return false;
      }
    }
    if (dir === TASK_ROOT || dir === path.dirname(dir)) return false;
    dir = path.dirname(dir);
  }
}

async function loadHandler(spec) {
  const slash = spec.lastIndexOf("/");
  const dirPart = spec.slice(0, slash + 1);
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1) {
    throw new InitError("Runtime.MalformedHandlerName", `Bad handler ${spec}`);
  }
  const moduleName = dirPart + rest.slice(0, dot);
  const names = rest.slice(dot + 1).split(".");
  const base = path.resolve(TASK_ROOT, moduleName);
  let file = null;
  for (const ext of [".js", ".mjs", ".cjs"]) {
    if (fs.existsSync(base + ext)) {
      file = base + ext;
      break;
    }
  }
  let mod;
  try {
    if (file === null) {
      // A module of NODE_PATH or a folder with an index, as require finds them.
      const req = createRequire(path.join(TASK_ROOT, "noop.js"));
      try {
        file = req.resolve(moduleName.startsWith(".") || moduleName.includes("/") ? base : moduleName);
      } catch (e) {
        throw new InitError("Runtime.ImportModuleError", `Error: Cannot find module '${moduleName}'`, e);
      }
    }
    if (file.endsWith(".mjs") || (file.endsWith(".js") && isModuleTree(file))) {
      mod = await import(pathToFileURL(file).href);
    } else {
      mod = createRequire(file)(file);
    }
  } catch (e) {
    if (e instanceof InitError) throw e;
    if (e instanceof SyntaxError) throw new InitError("Runtime.UserCodeSyntaxError", `${e.name}: ${e.message}`, e);
    if (e && (e.code === "MODULE_NOT_FOUND" || e.code === "ERR_MODULE_NOT_FOUND")) {
      throw new InitError("Runtime.ImportModuleError", `Error: ${e.message}`, e);
    }
    throw new InitError(e && e.name ? e.name : "Runtime.ImportModuleError", e && e.message ? e.message : String(e), e);
  }
  let fn = mod;
  for (const n of names) {
    fn = fn == null ? undefined : fn[n];
  }
  if (fn === undefined && mod && mod.default && typeof mod.default === "object") {
    fn = mod.default;
    for (const n of names) fn = fn == null ? undefined : fn[n];
  }
  if (typeof fn !== "function") {
    throw new InitError("Runtime.HandlerNotFound", `${spec} is undefined or not exported`);
  }
  return fn;
}

function makeContext(headers, onDone) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"] || 0);
  const parse = (h) => {
    if (!h) return undefined;
    try {
      return JSON.parse(h);
    } catch {
      return undefined;
    }
  };
  const ctx = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME || "",
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION || "$LATEST",
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"] || "",
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || "",
    awsRequestId: headers["lambda-runtime-aws-request-id"] || "",
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME || "",
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME || "",
    identity: parse(headers["lambda-runtime-cognito-identity"]),
    clientContext: parse(headers["lambda-runtime-client-context"]),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    // The legacy ways to end an invocation.
    done: (err, result) => onDone(err, result),
    succeed: (result) => onDone(null, result),
    fail: (err) => onDone(err || "handled"),
  };
  return ctx;
}

async function postResult(id, result) {
  let body;
  try {
    body = result === undefined ? "null" : JSON.stringify(result);
  } catch (e) {
    return postError(id, { errorType: "Runtime.MarshalError", errorMessage: `Unable to stringify response body: ${e.message}`, trace: [] });
  }
  await call("POST", `/invocation/${id}/response`, body === undefined ? "null" : body, { "Content-Type": "application/json" });
}

async function postError(id, e) {
  const body = e.errorType !== undefined ? e : errorBody(e);
  console.error(`Invoke Error \t${JSON.stringify(body)}`);
  await call("POST", `/invocation/${id}/error`, JSON.stringify(body), { "Lambda-Runtime-Function-Error-Type": String(body.errorType) });
}

// runOne runs one invocation and resolves once its answer is posted.
function runOne(handler, inv) {
  return new Promise((resolve) => {
    const id = inv.headers["lambda-runtime-aws-request-id"];
    let settled = false;
    const finish = (err, result) => {
      if (settled) return;
      settled = true;
      const post = () => (err !== null && err !== undefined ? postError(id, err) : postResult(id, result)).then(resolve, resolve);
      if (ctx.callbackWaitsForEmptyEventLoop && usesCallback) {
        // Answer once nothing else is pending, as Lambda does.
        process.once("beforeExit", post);
      } else {
        post();
      }
    };
    const ctx = makeContext(inv.headers, finish);
    const usesCallback = handler.length >= 3;
    let event;
    try {
      event = inv.body === "" ? null : JSON.parse(inv.body);
    } catch (e) {
      return finish(e);
    }
    let ret;
    try {
      ret = handler(event, ctx, finish);
    } catch (e) {
      return finish(e);
    }
    if (ret && typeof ret.then === "function") {
      ret.then((r) => {
        if (!settled) {
          settled = true;
          postResult(id, r).then(resolve, resolve);
        }
      }, (e) => {
        if (!settled) {
          settled = true;
          postError(id, e).then(resolve, resolve);
        }
      });
    } else if (!usesCallback && !settled) {
      settled = true;
      postResult(id, ret).then(resolve, resolve);
    }
  });
}

// In a primed shell this process started before its function was known,
// with the platform's environment and _NIMBUS_PRIME set: wait for the
// function's environment and put it in place of this one (process.env is
// the process's own: child processes and TZ follow it), before anything of
// the function's is loaded.
async function prime() {
  if (process.env._NIMBUS_PRIME !== "1") return;
  const r = await call("GET", "/nimbus/prime");
  if (r.status !== 200) {
    process.stderr.write(`runtime API /nimbus/prime answered ${r.status}: ${r.body.slice(0, 200)}\n`);
    process.exit(1);
  }
  for (const k of Object.keys(process.env)) delete process.env[k];
  for (const kv of r.body.split("\0")) {
    const i = kv.indexOf("=");
    if (i > 0) process.env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  // The working directory was /var/task before the code was mounted on
  // it: enter the mount.
  process.chdir(TASK_ROOT);
}

async function main() {
  await prime();
  patchConsole();
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || "");
  } catch (e) {
    const body = e instanceof InitError
      ? { errorType: e.errorType, errorMessage: e.message, trace: e.trace }
      : errorBody(e);
    console.error(`${body.errorType}: ${body.errorMessage}`);
    await call("POST", "/init/error", JSON.stringify(body), { "Lambda-Runtime-Function-Error-Type": body.errorType });
    process.exit(1);
  }
  let current = "";
  process.on("uncaughtException", async (e) => {
    const body = errorBody(e);
    console.error(`Uncaught Exception \t${JSON.stringify(body)}`);
    if (current) {
      await call("POST", `/invocation/${current}/error`, JSON.stringify(body), { "Lambda-Runtime-Function-Error-Type": body.errorType }).catch(() => {});
    }
    process.exit(129);
  });
  process.on("unhandledRejection", (reason) => {
    throw reason instanceof Error ? reason : Object.assign(new Error(String(reason)), { name: "Runtime.UnhandledPromiseRejection" });
  });
  for (;;) {
    const inv = await call("GET", "/invocation/next");
    if (inv.status !== 200) {
      process.stderr.write(`runtime API /next answered ${inv.status}: ${inv.body.slice(0, 200)}\n`);
      process.exit(1);
    }
    current = inv.headers["lambda-runtime-aws-request-id"] || "";
    currentRequestId = current;
    if (inv.headers["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = inv.headers["lambda-runtime-trace-id"];
    else delete process.env._X_AMZN_TRACE_ID;
    await runOne(handler, inv);
  }
}

main();
