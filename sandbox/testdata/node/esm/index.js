import { helper } from "./lib/helper.js";

const started = await Promise.resolve("top-level await");

export async function handler(event) {
  return { esm: true, started, helper: helper(), type: typeof require };
}
