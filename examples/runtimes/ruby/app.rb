def handler(event:, context:)
  { "hello" => event.fetch("name", "world"), "runtime" => "ruby3.3" }
end
