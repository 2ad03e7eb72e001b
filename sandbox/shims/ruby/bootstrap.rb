# nimbus's Ruby runtime: loads the function's handler and serves it over the
# Lambda Runtime API. Standard library only.
#
#   init:  _HANDLER is "file.method" or "file.Module::Class.method"; the file
#          is required from /var/task; a failure goes to /init/error as
#          Runtime.ImportModuleError (a LoadError), Runtime.UserCodeSyntaxError
#          or Runtime.HandlerNotFound, and the process exits.
#   loop:  GET /next, call handler(event:, context:), POST the result as JSON,
#          or the exception as {"errorMessage", "errorType": "Function<Class>",
#          "stackTrace"} (Lambda's Ruby shape).

require "json"
require "net/http"
require "time"

$stdout.sync = true
$stderr.sync = true

TASK_ROOT = ENV.fetch("LAMBDA_TASK_ROOT", "/var/task")
$LOAD_PATH.unshift("/opt/ruby/lib") unless $LOAD_PATH.include?("/opt/ruby/lib")
$LOAD_PATH.unshift(TASK_ROOT) unless $LOAD_PATH.include?(TASK_ROOT)

module NimbusRuntime
  BASE = "/2018-06-01/runtime"

  # One kept-alive connection to the Runtime API.
  class API
    def initialize(addr)
      host, port = addr.split(":")
      @http = Net::HTTP.new(host, Integer(port))
      @http.read_timeout = nil
      @http.keep_alive_timeout = 3600
      @http.start
    end

    def request(method, path, body = nil, headers = {})
      req = (method == :get ? Net::HTTP::Get : Net::HTTP::Post).new(BASE + path, headers)
      req.body = body if body
      @http.request(req)
    end
  end

  # The context object Lambda passes to a Ruby handler.
  class Context
    attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
                :function_name, :memory_limit_in_mb, :function_version, :identity,
                :client_context, :deadline_ms

    def initialize(headers)
      @aws_request_id = headers["lambda-runtime-aws-request-id"]
      @invoked_function_arn = headers["lambda-runtime-invoked-function-arn"]
      @deadline_ms = headers["lambda-runtime-deadline-ms"].to_i
      @log_group_name = ENV["AWS_LAMBDA_LOG_GROUP_NAME"]
      @log_stream_name = ENV["AWS_LAMBDA_LOG_STREAM_NAME"]
      @function_name = ENV["AWS_LAMBDA_FUNCTION_NAME"]
      @memory_limit_in_mb = ENV["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
      @function_version = ENV["AWS_LAMBDA_FUNCTION_VERSION"]
      @identity = parse(headers["lambda-runtime-cognito-identity"])
      @client_context = parse(headers["lambda-runtime-client-context"])
    end

    def get_remaining_time_in_millis
      [@deadline_ms - (Time.now.to_f * 1000).to_i, 0].max
    end

    private

    def parse(s)
      s && !s.empty? ? JSON.parse(s) : nil
    rescue JSON::ParserError
      nil
    end
  end

  class InitError < StandardError
    attr_reader :error_type, :trace

    def initialize(type, message, trace = [])
      super(message)
      @error_type = type
      @trace = trace || []
    end
  end

  def self.load_handler(spec)
    file, rest = spec.split(".", 2)
    raise InitError.new("Runtime.MalformedHandlerName", "Bad handler #{spec}: want file.method") if file.nil? || file.empty? || rest.nil? || rest.empty?
    path = File.expand_path(file, TASK_ROOT)
    begin
      require path
    rescue SyntaxError => e
      raise InitError.new("Runtime.UserCodeSyntaxError", "#{e.class}: #{e.message}", e.backtrace)
    rescue LoadError => e
      raise InitError.new("Runtime.ImportModuleError", "Error loading the file '#{file}': #{e.message}", e.backtrace)
    rescue StandardError, ScriptError => e
      raise InitError.new("Init<#{e.class}>", e.message, e.backtrace)
    end
    if rest.include?("::") || rest.match?(/\A[A-Z]/)
      const_path, _, meth = rest.rpartition(".")
      begin
        target = Object.const_get(const_path)
      rescue NameError
        raise InitError.new("Runtime.HandlerNotFound", "Handler '#{rest}' not found: #{const_path} is not defined")
      end
    else
      target, meth = Object, rest
    end
    unless target.respond_to?(meth, true) && (target != Object || Object.private_method_defined?(meth) || Object.method_defined?(meth))
      raise InitError.new("Runtime.HandlerNotFound", "Handler '#{meth}' missing on file '#{file}'")
    end
    target.method(meth)
  end

  def self.error_body(e)
    {
      "errorMessage" => e.message,
      "errorType" => "Function<#{e.class}>",
      "stackTrace" => e.backtrace || [],
    }
  end

  # In a primed shell this process started before its function was known,
  # with the platform's environment and _NIMBUS_PRIME set: wait for the
  # function's environment and put it in place of this one (ENV is the
  # process's own), before anything of the function's is loaded.
  def self.prime(api)
    return unless ENV["_NIMBUS_PRIME"] == "1"
    resp = api.request(:get, "/nimbus/prime")
    unless resp.code == "200"
      $stderr.puts("runtime API /nimbus/prime answered #{resp.code}: #{resp.body.to_s[0, 200]}")
      exit(1)
    end
    env = {}
    resp.body.to_s.b.split("\0".b).each do |kv|
      k, sep, v = kv.partition("=".b)
      env[k] = v unless sep.empty?
    end
    ENV.replace(env)
    # The working directory was /var/task before the code was mounted on
    # it: enter the mount.
    Dir.chdir(TASK_ROOT)
    # RubyGems looked for gems before /var/task and the layers were there.
    Gem.clear_paths if defined?(Gem)
  end

  def self.run
    api = API.new(ENV.fetch("AWS_LAMBDA_RUNTIME_API"))
    prime(api)
    begin
      handler = load_handler(ENV.fetch("_HANDLER", ""))
    rescue InitError => e
      body = { "errorMessage" => e.message, "errorType" => e.error_type, "stackTrace" => e.trace }
      $stdout.puts("Init error when loading handler #{ENV["_HANDLER"]}")
      $stdout.puts(JSON.generate(body))
      api.request(:post, "/init/error", JSON.generate(body), "Lambda-Runtime-Function-Error-Type" => e.error_type)
      exit(1)
    end
    loop do
      resp = api.request(:get, "/invocation/next")
      unless resp.code == "200"
        $stderr.puts("runtime API /next answered #{resp.code}: #{resp.body.to_s[0, 200]}")
        exit(1)
      end
      id = resp["lambda-runtime-aws-request-id"]
      if (trace = resp["lambda-runtime-trace-id"])
        ENV["_X_AMZN_TRACE_ID"] = trace
      else
        ENV.delete("_X_AMZN_TRACE_ID")
      end
      headers = resp.each_header.to_h
      begin
        event = resp.body.nil? || resp.body.empty? ? nil : JSON.parse(resp.body)
        result = handler.call(event: event, context: Context.new(headers))
        out = JSON.generate(result)
      rescue StandardError, ScriptError => e
        body = error_body(e)
        $stdout.puts("Error raised from handler method")
        $stdout.puts(JSON.generate(body))
        api.request(:post, "/invocation/#{id}/error", JSON.generate(body), "Lambda-Runtime-Function-Error-Type" => body["errorType"])
        next
      end
      api.request(:post, "/invocation/#{id}/response", out, "Content-Type" => "application/json")
    end
  end
end

NimbusRuntime.run
