package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;

import java.util.LinkedHashMap;
import java.util.Map;

public class Hello implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private int count; // one instance per sandbox: kept while it stays warm

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        count++;
        context.getLogger().log("got " + event + "\n");
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("event", event);
        out.put("count", count);
        out.put("requestId", context.getAwsRequestId());
        out.put("functionName", context.getFunctionName());
        out.put("arn", context.getInvokedFunctionArn());
        out.put("memory", context.getMemoryLimitInMB());
        out.put("remaining", context.getRemainingTimeInMillis());
        out.put("maxHeap", Runtime.getRuntime().maxMemory());
        out.put("version", Runtime.version().feature());
        return out;
    }
}
