const lib = require("layerlib");
exports.handler = async () => ({ layer: lib.name });
