export const handler = async (event) => ({ hello: event.name ?? "world", runtime: "nodejs20.x" });
