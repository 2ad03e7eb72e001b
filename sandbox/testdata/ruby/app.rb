require "json"
require_relative "lib/helper"

$count = 0 # kept while the sandbox stays warm

def handler(event:, context:)
  $count += 1
  puts "got #{JSON.generate(event)}"
  {
    "event" => event,
    "count" => $count,
    "request_id" => context.aws_request_id,
    "function_name" => context.function_name,
    "function_version" => context.function_version,
    "arn" => context.invoked_function_arn,
    "memory" => context.memory_limit_in_mb,
    "log_group" => context.log_group_name,
    "remaining" => context.get_remaining_time_in_millis,
    "helper" => Helper.value,
    "version" => RUBY_VERSION[0, 3],
  }
end

def fail(event:, context:)
  raise ArgumentError, "bad argument #{event["n"]}"
end

def sleep_for(event:, context:)
  sleep event["seconds"]
  "woke"
end

module Outer
  class Handler
    def self.process(event:, context:)
      { "from" => "Outer::Handler.process" }
    end
  end
end

def environ(event:, context:)
  {
    "value" => ENV[event["name"]],
    "prime" => ENV["_NIMBUS_PRIME"],
    "tz" => Time.at(0).zone,
    "function" => ENV["AWS_LAMBDA_FUNCTION_NAME"],
    "relative" => File.exist?("app.rb"),
  }
end
