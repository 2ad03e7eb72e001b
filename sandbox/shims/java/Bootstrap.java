// nimbus's Java runtime: loads the function's classes from /var/task (its
// classes, and the jars in /var/task/lib) and /opt/java/lib, and serves the
// handler over the Lambda Runtime API.
//
// Handlers, as Lambda's: "package.Class::method" (a POJO method taking the
// event and, optionally, the Context) or "package.Class" (a RequestHandler
// or RequestStreamHandler of aws-lambda-java-core, which the function's own
// package brings). The Context the handler gets implements the function's
// own com.amazonaws.services.lambda.runtime.Context interface (a proxy), so
// the shim does not ship those interfaces. JSON is Debian's Jackson.
package nimbus;

import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.DeserializationFeature;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Proxy;
import java.lang.reflect.Type;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class Bootstrap {
    private static final String CORE = "com.amazonaws.services.lambda.runtime.";
    private static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    private static final String BASE = "/2018-06-01/runtime";
    private final String host;
    private final int port;
    private Socket sock;
    private BufferedInputStream in;
    private OutputStream out;

    private Bootstrap(String api) {
        int i = api.lastIndexOf(':');
        this.host = api.substring(0, i);
        this.port = Integer.parseInt(api.substring(i + 1));
    }

    /** An answer of the Runtime API: status, headers (lower case), body. */
    record Response(int status, Map<String, List<String>> headers, byte[] body) {}

    // HTTP/1.1 over one kept-alive socket: java.net.http would load and
    // start far more than a cold start can afford.
    private Response call(String method, String path, byte[] body, String... headers) throws IOException {
        for (int attempt = 0; ; attempt++) {
            try {
                if (sock == null) {
                    sock = new Socket();
                    sock.setTcpNoDelay(true);
                    sock.connect(new InetSocketAddress(host, port));
                    in = new BufferedInputStream(sock.getInputStream(), 65536);
                    out = sock.getOutputStream();
                }
                StringBuilder h = new StringBuilder();
                h.append(method).append(' ').append(BASE).append(path).append(" HTTP/1.1\r\nHost: runtime\r\nContent-Length: ")
                        .append(body == null ? 0 : body.length).append("\r\n");
                for (int i = 0; i + 1 < headers.length; i += 2) h.append(headers[i]).append(": ").append(headers[i + 1]).append("\r\n");
                h.append("\r\n");
                out.write(h.toString().getBytes(StandardCharsets.ISO_8859_1));
                if (body != null) out.write(body);
                out.flush();
                return read();
            } catch (IOException e) {
                if (sock != null) sock.close();
                sock = null;
                if (attempt > 0) throw e;
            }
        }
    }

    private String line() throws IOException {
        StringBuilder b = new StringBuilder();
        for (int c; (c = in.read()) != -1; ) {
            if (c == '\n') break;
            if (c != '\r') b.append((char) c);
            if (b.length() > 65536) throw new IOException("header line too long");
        }
        return b.toString();
    }

    private Response read() throws IOException {
        String status = line();
        if (status.isEmpty()) throw new IOException("connection closed");
        int code = Integer.parseInt(status.split(" ", 3)[1]);
        Map<String, List<String>> headers = new HashMap<>();
        for (String l; !(l = line()).isEmpty(); ) {
            int c = l.indexOf(':');
            if (c > 0) headers.computeIfAbsent(l.substring(0, c).trim().toLowerCase(), k -> new ArrayList<>()).add(l.substring(c + 1).trim());
        }
        byte[] body;
        if ("chunked".equalsIgnoreCase(first(headers, "transfer-encoding", ""))) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            for (;;) {
                int size = Integer.parseInt(line().split(";")[0].trim(), 16);
                if (size == 0) {
                    line();
                    break;
                }
                b.write(in.readNBytes(size));
                line();
            }
            body = b.toByteArray();
        } else {
            body = in.readNBytes(Integer.parseInt(first(headers, "content-length", "0")));
        }
        if ("close".equalsIgnoreCase(first(headers, "connection", ""))) {
            sock.close();
            sock = null;
        }
        return new Response(code, headers, body);
    }

    /** How the handler is called. */
    private interface Invoker {
        byte[] invoke(byte[] event, Object context) throws Throwable;
    }

    static final class InitError extends Exception {
        final String type;

        InitError(String type, String message, Throwable cause) {
            super(message, cause);
            this.type = type;
        }
    }

    public static void main(String[] args) throws Throwable {
        if (args.length > 0 && args[0].equals("--selftest")) {
            // Used by the image build to record the classes a start loads.
            JSON.readTree("{\"a\":[1,2,{\"b\":null}]}");
            JSON.writeValueAsBytes(Map.of("ok", true));
            JSON.readValue("{\"a\":1}".getBytes(StandardCharsets.UTF_8), JSON.getTypeFactory().constructType(Map.class));
            return;
        }
        Bootstrap b = new Bootstrap(System.getenv("AWS_LAMBDA_RUNTIME_API"));
        if ("1".equals(System.getenv("_NIMBUS_PRIME"))) b.prime();
        b.run(System.getenv("_HANDLER"));
    }

    /**
     * In a primed shell this JVM started before its function was known,
     * with the platform's environment and _NIMBUS_PRIME set: load what every
     * start uses, wait for the function's environment and put it in place
     * of this one, and enter /var/task again (the working directory was the
     * folder the code was then mounted over), before anything of the
     * function's is loaded.
     */
    private void prime() throws Throwable {
        warm();
        java.lang.invoke.MethodHandle chdir = chdirHandle();
        chdir(chdir, "."); // its first call links it
        java.lang.invoke.MethodHandle clearenv = libc("clearenv", java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT));
        java.lang.invoke.MethodHandle setenv = libc("setenv", java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT,
                java.lang.foreign.ValueLayout.ADDRESS, java.lang.foreign.ValueLayout.ADDRESS, java.lang.foreign.ValueLayout.JAVA_INT));
        setenv(setenv, "_NIMBUS_PRIME", "1"); // links it
        Map<String, String> live = environmentMap();
        Response r = call("GET", "/nimbus/prime", null);
        if (r.status() != 200) {
            System.err.println("runtime API /nimbus/prime answered " + r.status());
            System.exit(1);
        }
        Map<String, String> env = new HashMap<>();
        for (String kv : new String(r.body(), StandardCharsets.UTF_8).split("\0")) {
            int i = kv.indexOf('=');
            if (i > 0) env.put(kv.substring(0, i), kv.substring(i + 1));
        }
        // The C library's environment too: a child process that
        // ProcessBuilder or Runtime.exec starts without an environment of
        // its own gets it, and native code (JNI, the AWS CRT) reads it.
        if ((int) clearenv.invokeExact() != 0) throw new IOException("clearenv failed");
        for (Map.Entry<String, String> kv : env.entrySet()) setenv(setenv, kv.getKey(), kv.getValue());
        live.clear();
        live.putAll(env);
        chdir(chdir, env.getOrDefault("LAMBDA_TASK_ROOT", "/var/task"));
        // The default zone is read from TZ when first asked for: ask with the
        // function's (the C library's environment is still the first one).
        String tz = env.get("TZ");
        if (tz != null) {
            java.util.TimeZone zone = java.util.TimeZone.getTimeZone(tz.startsWith(":") ? tz.substring(1) : tz);
            java.util.TimeZone.setDefault(zone);
            System.setProperty("user.timezone", zone.getID()); // as a JVM started with this TZ has it
        }
    }

    /** A function of the C library, through the foreign function API. */
    private static java.lang.invoke.MethodHandle libc(String name, java.lang.foreign.FunctionDescriptor fd) {
        java.lang.foreign.Linker linker = java.lang.foreign.Linker.nativeLinker();
        return linker.downcallHandle(linker.defaultLookup().find(name).orElseThrow(), fd);
    }

    private static void setenv(java.lang.invoke.MethodHandle h, String k, String v) throws Throwable {
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            int rc = (int) h.invokeExact(arena.allocateUtf8String(k), arena.allocateUtf8String(v), 1);
            if (rc != 0) throw new IOException("setenv " + k + " failed");
        }
    }

    /**
     * What a primed JVM does before its function is known so that the
     * function's init need not: Jackson's first reads and writes, and the
     * reflection, proxies and class loader that load() and context() use
     * (each links and generates classes on its first use).
     */
    private static void warm() throws Throwable {
        JSON.readTree("{\"a\":[1,2,{\"b\":null}]}");
        JSON.writeValueAsBytes(Map.of("ok", true));
        JSON.readValue("{\"a\":1}".getBytes(StandardCharsets.UTF_8), JSON.getTypeFactory().constructType(Map.class));
        Method m = Bootstrap.class.getDeclaredMethod("first", Map.class, String.class, String.class);
        m.invoke(null, new HashMap<String, List<String>>(), "k", "v");
        Object p = Proxy.newProxyInstance(Bootstrap.class.getClassLoader(), new Class<?>[] {Runnable.class}, (px, mm, a) -> null);
        ((Runnable) p).run();
        try (URLClassLoader l = new URLClassLoader(new URL[] {new File("/").toURI().toURL()}, Bootstrap.class.getClassLoader())) {
            l.getResource("nothing-here");
        }
    }

    /**
     * The map behind System.getenv(): the JVM reads the environment once,
     * into a map that the JDK keeps behind an unmodifiable view (and that
     * ProcessBuilder copies); changing the view's own map in place changes
     * both. sun.misc.Unsafe reaches it without --add-opens.
     */
    @SuppressWarnings("unchecked")
    private static Map<String, String> environmentMap() throws Exception {
        java.lang.reflect.Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        sun.misc.Unsafe u = (sun.misc.Unsafe) f.get(null);
        java.lang.reflect.Field view = Class.forName("java.lang.ProcessEnvironment").getDeclaredField("theUnmodifiableEnvironment");
        Object unmodifiable = u.getObject(u.staticFieldBase(view), u.staticFieldOffset(view));
        java.lang.reflect.Field inner = Class.forName("java.util.Collections$UnmodifiableMap").getDeclaredField("m");
        return (Map<String, String>) u.getObject(unmodifiable, u.objectFieldOffset(inner));
    }

    /** chdir(2), through the foreign function API: Java has none of its own. */
    private static java.lang.invoke.MethodHandle chdirHandle() {
        java.lang.foreign.Linker linker = java.lang.foreign.Linker.nativeLinker();
        return linker.downcallHandle(
                linker.defaultLookup().find("chdir").orElseThrow(),
                java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT, java.lang.foreign.ValueLayout.ADDRESS));
    }

    private static void chdir(java.lang.invoke.MethodHandle h, String dir) throws Throwable {
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            int rc = (int) h.invokeExact(arena.allocateUtf8String(dir));
            if (rc != 0) throw new IOException("chdir " + dir + " failed");
        }
    }

    private void run(String handler) throws Exception {
        Invoker invoker;
        ClassLoader loader;
        try {
            loader = functionLoader();
            Thread.currentThread().setContextClassLoader(loader);
            invoker = load(loader, handler == null ? "" : handler);
        } catch (InitError e) {
            postError("/init/error", e.type, errorBody(e.type, e.getMessage(), e.getCause() != null ? e.getCause() : e));
            System.exit(1);
            return;
        }
        for (;;) {
            Response next = call("GET", "/invocation/next", null);
            if (next.status() != 200) {
                System.err.println("runtime API /next answered " + next.status());
                System.exit(1);
            }
            String id = first(next.headers(), "lambda-runtime-aws-request-id", "");
            Object ctx = context(loader, next.headers(), id);
            byte[] result;
            try {
                result = invoker.invoke(next.body(), ctx);
            } catch (Throwable t) {
                Throwable e = t instanceof InvocationTargetException && t.getCause() != null ? t.getCause() : t;
                String type = e.getClass().getName();
                System.out.println(stackString(e));
                postError("/invocation/" + id + "/error", type, errorBody(type, e.getMessage(), e));
                continue;
            }
            call("POST", "/invocation/" + id + "/response", result, "Content-Type", "application/json");
        }
    }

    private static ClassLoader functionLoader() throws Exception {
        List<URL> urls = new ArrayList<>();
        String task = System.getenv().getOrDefault("LAMBDA_TASK_ROOT", "/var/task");
        urls.add(new File(task + "/").toURI().toURL());
        for (String dir : new String[] {task + "/lib", "/opt/java/lib"}) {
            File[] jars = new File(dir).listFiles((d, n) -> n.endsWith(".jar"));
            if (jars != null) {
                java.util.Arrays.sort(jars);
                for (File j : jars) urls.add(j.toURI().toURL());
            }
        }
        File[] topJars = new File(task).listFiles((d, n) -> n.endsWith(".jar"));
        if (topJars != null) {
            java.util.Arrays.sort(topJars);
            for (File j : topJars) urls.add(j.toURI().toURL());
        }
        return new URLClassLoader(urls.toArray(new URL[0]), Bootstrap.class.getClassLoader());
    }

    private static Invoker load(ClassLoader loader, String handler) throws InitError {
        String className = handler, methodName = null;
        int sep = handler.indexOf("::");
        if (sep >= 0) {
            className = handler.substring(0, sep);
            methodName = handler.substring(sep + 2);
        }
        if (className.isEmpty() || (methodName != null && methodName.isEmpty())) {
            throw new InitError("Runtime.MalformedHandlerName", "Bad handler " + handler, null);
        }
        Class<?> cls;
        try {
            cls = Class.forName(className, true, loader);
        } catch (ClassNotFoundException | NoClassDefFoundError e) {
            throw new InitError("Runtime.ClassNotFound", "Class not found: " + className, e);
        } catch (ExceptionInInitializerError e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            throw new InitError(c.getClass().getName(), String.valueOf(c.getMessage()), c);
        }
        Object instance;
        try {
            instance = cls.getDeclaredConstructor().newInstance();
        } catch (InvocationTargetException e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            throw new InitError(c.getClass().getName(), String.valueOf(c.getMessage()), c);
        } catch (ReflectiveOperationException e) {
            throw new InitError("Runtime.InvalidHandler", "Class " + className + " has no public constructor without arguments", e);
        }
        if (methodName == null) {
            if (implementsNamed(cls, CORE + "RequestStreamHandler")) {
                methodName = "handleRequest";
                Method m = findMethod(cls, "handleRequest", 3);
                return stream(instance, m);
            }
            if (!implementsNamed(cls, CORE + "RequestHandler")) {
                throw new InitError("Runtime.InvalidHandler", "Class " + className + " does not implement RequestHandler or RequestStreamHandler, and the handler names no method", null);
            }
            Type input = requestHandlerInput(cls);
            Method m = null;
            for (Method x : cls.getMethods()) {
                if (x.getName().equals("handleRequest") && x.getParameterCount() == 2 && !x.isBridge()) m = x;
            }
            if (m == null) m = findMethod(cls, "handleRequest", 2);
            return pojo(instance, m, input);
        }
        Method m = null;
        for (Method x : cls.getMethods()) {
            if (x.getName().equals(methodName) && !x.isBridge() && (m == null || x.getParameterCount() > m.getParameterCount())) m = x;
        }
        if (m == null) {
            throw new InitError("Runtime.HandlerNotFound", "No public method named " + methodName + " on class " + className, null);
        }
        Class<?>[] p = m.getParameterTypes();
        if (p.length == 3 && InputStream.class.isAssignableFrom(p[0]) && OutputStream.class.isAssignableFrom(p[1])) {
            return stream(instance, m);
        }
        Type input = p.length > 0 ? m.getGenericParameterTypes()[0] : null;
        return pojo(instance, m, input);
    }

    private static Method findMethod(Class<?> cls, String name, int params) throws InitError {
        for (Method x : cls.getMethods()) {
            if (x.getName().equals(name) && x.getParameterCount() == params) return x;
        }
        throw new InitError("Runtime.HandlerNotFound", "No public method " + name + " with " + params + " parameters on class " + cls.getName(), null);
    }

    private static Invoker stream(Object instance, Method m) {
        return (event, ctx) -> {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            m.invoke(instance, new ByteArrayInputStream(event), out, ctx);
            return out.toByteArray();
        };
    }

    private static Invoker pojo(Object instance, Method m, Type input) {
        int n = m.getParameterCount();
        JavaType type = input == null ? null : JSON.getTypeFactory().constructType(input);
        return (event, ctx) -> {
            Object[] args = new Object[n];
            if (n >= 1) {
                Class<?> raw = type.getRawClass();
                if (raw == InputStream.class) {
                    args[0] = new ByteArrayInputStream(event);
                } else if (raw == String.class && (event.length == 0 || event[0] != '"')) {
                    args[0] = new String(event, StandardCharsets.UTF_8);
                } else {
                    args[0] = event.length == 0 ? null : JSON.readValue(event, type);
                }
            }
            if (n >= 2) args[1] = ctx;
            Object result = m.invoke(instance, args);
            if (m.getReturnType() == void.class) return "null".getBytes(StandardCharsets.UTF_8);
            return JSON.writeValueAsBytes(result);
        };
    }

    private static boolean implementsNamed(Class<?> cls, String iface) {
        for (Class<?> c = cls; c != null; c = c.getSuperclass()) {
            for (Class<?> i : c.getInterfaces()) {
                if (i.getName().equals(iface) || implementsNamed(i, iface)) return true;
            }
        }
        return false;
    }

    /** The I of RequestHandler<I, O>, through superclasses. */
    private static Type requestHandlerInput(Class<?> cls) {
        for (Class<?> c = cls; c != null; c = c.getSuperclass()) {
            for (Type t : c.getGenericInterfaces()) {
                if (t instanceof ParameterizedType pt && ((Class<?>) pt.getRawType()).getName().equals(CORE + "RequestHandler")) {
                    return pt.getActualTypeArguments()[0];
                }
            }
        }
        return Object.class;
    }

    /** A Context implementing the function's own interface, if it has it. */
    private static Object context(ClassLoader loader, Map<String, List<String>> headers, String id) {
        Class<?> iface, loggerIface;
        try {
            iface = Class.forName(CORE + "Context", false, loader);
            loggerIface = Class.forName(CORE + "LambdaLogger", false, loader);
        } catch (ClassNotFoundException e) {
            return null; // a POJO that takes no Context
        }
        long deadline = Long.parseLong(first(headers, "lambda-runtime-deadline-ms", "0"));
        Map<String, String> env = System.getenv();
        Object logger = Proxy.newProxyInstance(loader, new Class<?>[] {loggerIface}, (p, m, a) -> {
            switch (m.getName()) {
                case "log":
                    if (a != null && a.length > 0) {
                        if (a[0] instanceof byte[] b) System.out.write(b, 0, b.length);
                        else System.out.print(String.valueOf(a[0]));
                        System.out.flush();
                    }
                    return null;
                case "toString":
                    return "LambdaLogger";
                case "hashCode":
                    return System.identityHashCode(p);
                case "equals":
                    return p == a[0];
                default:
                    return null;
            }
        });
        return Proxy.newProxyInstance(loader, new Class<?>[] {iface}, (p, m, a) -> {
            switch (m.getName()) {
                case "getAwsRequestId": return id;
                case "getLogGroupName": return env.getOrDefault("AWS_LAMBDA_LOG_GROUP_NAME", "");
                case "getLogStreamName": return env.getOrDefault("AWS_LAMBDA_LOG_STREAM_NAME", "");
                case "getFunctionName": return env.getOrDefault("AWS_LAMBDA_FUNCTION_NAME", "");
                case "getFunctionVersion": return env.getOrDefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
                case "getInvokedFunctionArn": return first(headers, "lambda-runtime-invoked-function-arn", "");
                case "getRemainingTimeInMillis": return (int) Math.max(deadline - System.currentTimeMillis(), 0);
                case "getMemoryLimitInMB": return Integer.parseInt(env.getOrDefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0"));
                case "getLogger": return logger;
                case "getIdentity":
                case "getClientContext": return null;
                case "toString": return "Context[" + id + "]";
                case "hashCode": return System.identityHashCode(p);
                case "equals": return p == a[0];
                default: return null;
            }
        });
    }

    private static String first(Map<String, List<String>> h, String k, String def) {
        List<String> v = h.get(k);
        return v == null || v.isEmpty() ? def : v.get(0);
    }

    private static byte[] errorBody(String type, String message, Throwable t) throws Exception {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("errorMessage", message);
        body.put("errorType", type);
        List<String> trace = new ArrayList<>();
        for (StackTraceElement e : t.getStackTrace()) trace.add(e.toString());
        body.put("stackTrace", trace);
        if (t.getCause() != null && t.getCause() != t) {
            Map<String, Object> cause = new LinkedHashMap<>();
            cause.put("errorMessage", t.getCause().getMessage());
            cause.put("errorType", t.getCause().getClass().getName());
            body.put("cause", cause);
        }
        return JSON.writeValueAsBytes(body);
    }

    private void postError(String path, String type, byte[] body) throws Exception {
        call("POST", path, body, "Lambda-Runtime-Function-Error-Type", type);
    }

    private static String stackString(Throwable t) {
        StringWriter w = new StringWriter();
        t.printStackTrace(new PrintWriter(w));
        return w.toString().replace('\n', '\r');
    }
}
