package example;

import java.util.Map;

// A POJO handler: no aws-lambda-java-core needed.
public class Hello {
    public Map<String, String> handle(Map<String, Object> event) {
        Object name = event == null ? null : event.get("name");
        return Map.of("hello", name == null ? "world" : name.toString(), "runtime", "java21");
    }
}
