package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;

import java.util.HashMap;
import java.util.Map;

/** What the function sees of its environment (TestPrimedShells). */
public class Env implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        Map<String, Object> out = new HashMap<>();
        out.put("value", System.getenv((String) event.get("name")));
        out.put("prime", System.getenv("_NIMBUS_PRIME"));
        out.put("tz", java.util.TimeZone.getDefault().getID());
        out.put("function", System.getenv("AWS_LAMBDA_FUNCTION_NAME"));
        out.put("relative", new java.io.File("example/Env.class").exists());
        out.put("userTimezone", System.getProperty("user.timezone"));
        // A child process started without an environment of its own.
        try {
            Process p = new ProcessBuilder("/bin/sh", "-c", "printf %s \"$" + event.get("name") + "\"").start();
            out.put("child", new String(p.getInputStream().readAllBytes()));
            p.waitFor();
        } catch (Exception e) {
            out.put("child", "error: " + e);
        }
        return out;
    }
}
