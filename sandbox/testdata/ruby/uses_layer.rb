require "layerlib"

def handler(event:, context:)
  { "layer" => LayerLib::NAME }
end
