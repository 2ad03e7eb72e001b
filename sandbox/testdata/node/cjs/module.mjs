export const handler = async (event) => ({ esm: true, file: "module.mjs", n: event.n });
