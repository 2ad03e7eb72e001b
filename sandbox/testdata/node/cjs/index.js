let count = 0; // module state: kept while the sandbox stays warm

exports.handler = async (event, context) => {
  count++;
  console.log("got", JSON.stringify(event));
  return {
    event,
    count,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB,
    logGroup: context.logGroupName,
    logStream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    nodePath: process.env.NODE_PATH,
    version: process.versions.node.split(".")[0],
  };
};

// A callback handler that leaves a timer behind: Lambda answers once the
// event loop is empty, unless callbackWaitsForEmptyEventLoop is false.
exports.callback = (event, context, callback) => {
  if (event.noWait) context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log("timer fired"), event.noWait ? 3000 : 200);
  callback(null, { waited: !event.noWait });
};

exports.callbackError = (event, context, callback) => {
  callback(new RangeError("out of range"));
};

exports.fail = async () => {
  throw new TypeError("bad type");
};

exports.nested = { deeper: { fn: async () => "nested" } };

exports.sleep = async (event) => {
  await new Promise((r) => setTimeout(r, event.ms));
  return "woke";
};

exports.environ = async (event) => ({
  value: process.env[event.name] ?? null,
  prime: process.env._NIMBUS_PRIME ?? null,
  tz: String(new Date(0).getTimezoneOffset()),
  function: process.env.AWS_LAMBDA_FUNCTION_NAME ?? null,
  relative: require("fs").existsSync("index.js"),
});
